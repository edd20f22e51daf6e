"""The admin: every model is there for leads, and history cannot be edited (annotate/admin.py)."""

import pytest
from django.contrib import admin

from annotate import services
from annotate.models import Assignment, Image, Judgement, Pair
from tests.conftest import make_round

pytestmark = pytest.mark.django_db


def test_every_domain_model_is_registered():
    from django.apps import apps

    for model in apps.get_app_config("annotate").get_models():
        assert admin.site.is_registered(model), model


def test_every_changelist_and_change_page_renders(lead_browser, taste, annotator):
    make_round(taste, pairs=2)
    (assignment,) = services.assignment_claim(annotator=annotator, taste=taste)
    services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice="left",
                              client_uuid=services.uuid.uuid4())
    from django.apps import apps

    for model in apps.get_app_config("annotate").get_models():
        meta = model._meta
        assert lead_browser.get(f"/admin/annotate/{meta.model_name}/").status_code == 200, meta.model_name
        row = model.objects.first()
        if row is not None:
            assert lead_browser.get(f"/admin/annotate/{meta.model_name}/{row.pk}/change/").status_code == 200


@pytest.mark.parametrize("model", [Image, Pair, Assignment, Judgement])
def test_history_is_read_only(lead_browser, model):
    model_admin = admin.site._registry[model]
    request = type("Request", (), {"user": None})()
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert lead_browser.get(f"/admin/annotate/{model._meta.model_name}/add/").status_code == 403
