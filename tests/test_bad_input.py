"""Hostile or oversized requests get 400, 404, 413 or 429 answers in the API's error shape, never a 500."""

import pytest
from django.core.management import call_command
from django.test import Client

from annotate.errors import DomainError
from annotate.launch import round_launch
from annotate.models import Export, Prompt
from tests.conftest import client_for
from tests.test_launch import PROMPTS, model_dir, ready_taste  # noqa: F401 (fixtures)
from tests.test_launch import settings as launch_settings

DEEP = "[" * 100_000


def test_a_nul_byte_in_the_query_string_is_a_400(lead):
    answer = client_for(lead).get("/api/v1/rounds/?taste=%00")
    assert answer.status_code == 400 and answer.json()["code"] == "invalid"


@pytest.mark.parametrize("path", ["/api/v1/judgements/", "/api/v1/exports/"])
def test_json_nested_past_the_recursion_limit_is_a_400(lead, path):
    answer = client_for(lead).post(path, DEEP, content_type="application/json")
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["detail"]


def test_a_nul_character_in_a_json_string_is_a_400(lead):
    body = '{"tastes": ["a\\u0000b"]}'
    answer = client_for(lead).post("/api/v1/exports/", body, content_type="application/json")
    assert answer.status_code == 400 and "NUL" in answer.json()["detail"]


@pytest.mark.parametrize("path", ["/api/v1/rounds/abc/", "/api/v1/exports/x/download/", "/api/v1/nothing-here/"])
def test_a_path_that_matches_no_route_is_a_json_404(lead, path):
    answer = client_for(lead).get(path)
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"


def test_a_path_that_matches_no_route_is_a_json_404_with_debug_on_too(settings, lead):
    settings.DEBUG = True  # the demo's .env: Django would answer with its HTML debug page
    answer = client_for(lead).get("/api/v1/rounds/abc/")
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert client_for(lead).get("/api/v1/rounds/").status_code == 200


def test_drf_errors_carry_a_code_like_domain_errors(taste, annotator):
    assert Client().get("/api/v1/me/").json()["code"] == "not_authenticated"
    assert client_for(annotator).get("/api/v1/rounds/").json()["code"] == "permission_denied"


def test_a_body_over_the_limit_is_refused_from_content_length_with_413(settings, annotator):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    answer = client_for(annotator).post("/api/v1/judgements/", "x" * 2000, content_type="application/json")
    assert answer.status_code == 413 and answer.json()["code"] == "too_large"
    form = Client().post("/login/", f"username={'x' * 2000}&password=y",
                         content_type="application/x-www-form-urlencoded")
    assert form.status_code == 413


def test_a_lead_has_at_most_three_exports_queued_or_running(lead):
    client = client_for(lead)
    for _ in range(3):
        assert client.post("/api/v1/exports/", {}, format="json").status_code == 202
    refused = client.post("/api/v1/exports/", {}, format="json")
    assert refused.status_code == 429 and refused.json()["code"] == "too_many_exports"
    assert Export.objects.count() == 3
    Export.objects.filter(pk=Export.objects.first().pk).update(state=Export.State.DONE)
    assert client.post("/api/v1/exports/", {}, format="json").status_code == 202


def test_the_export_page_refuses_a_fourth_export_with_a_message(lead, lead_browser):
    for _ in range(3):
        Export.objects.create(requested_by=lead, options={})
    form = {"format": "pickapic", "aggregate": "none", "ties": "drop", "image_format": "original"}
    answer = lead_browser.post("/admin/annotate/export/add/", form, follow=True)
    assert b"already have 3 exports" in answer.content and Export.objects.count() == 3


def test_launch_refuses_captions_over_the_limit(ready_taste):
    with pytest.raises(DomainError, match="longer than 1000 characters"):
        round_launch(taste=ready_taste, settings=launch_settings(prompt_texts=[*PROMPTS, "x" * 1001]))
    assert not Prompt.objects.filter(text__startswith="xxx").exists()


def test_every_page_has_a_content_security_policy_without_inline_scripts(lead_browser, taste, annotator):
    for path in ["/login/", "/admin/", "/api/docs/", f"/admin/annotate/taste/{taste.pk}/charts/"]:
        policy = lead_browser.get(path)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline' " not in policy.split("script-src")[1].split(";")[0]
    docs = lead_browser.get("/api/docs/").content.decode()
    assert "<script>" not in docs  # Swagger UI's start-up script is a file


def test_the_schema_validates_and_documents_the_error_answers(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    import yaml

    paths = yaml.safe_load(out.read_text())["paths"]
    judgement = paths["/api/v1/judgements/"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409", "413", "429"} <= set(judgement)
    assert {"400", "401", "403", "404"} <= set(paths["/api/v1/rounds/{round_id}/"]["get"]["responses"])


def test_import_refuses_unknown_flags_and_long_captions(taste, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.conftest import png_bytes

    rows = {"caption": ["ok", "y" * 1001], "jpg_0": [png_bytes(), png_bytes()], "jpg_1": [png_bytes((1, 2, 3))] * 2,
            "label_0": [1.0, 0.0], "flags_0": [["waxy_skin"], ["made_up"]], "flags_1": [[], []]}
    path = tmp_path / "prefs.parquet"
    pq.write_table(pa.table(rows), path)
    from django.core.management import CommandError, call_command

    from annotate.models import Judgement

    with pytest.raises(CommandError) as refused:
        call_command("import_preferences", str(path), "--taste", taste.slug, "--source", "bad")
    message = str(refused.value)
    assert "row 1: caption has 1001 characters" in message and "row 1: flags_0 has unknown flags made_up" in message
    assert "row 0" not in message
    assert not Judgement.objects.exists()


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_a_nul_byte_in_a_login_form_is_no_500(db, path):
    answer = Client().post(path, {"username": "ad\x00min", "password": "x\x00y"})
    assert answer.status_code == 200  # the form's own error: null characters are not allowed
