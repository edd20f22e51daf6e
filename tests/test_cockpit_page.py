"""The round's cockpit in real Chromium against a live server: live progress and an action with its CSRF token."""

import uuid

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from annotate import services
from annotate.models import Assignment
from tests.conftest import make_annotator, make_lead, make_round

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cockpit_page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


def log_in_as_lead(page, lead) -> None:
    page.goto("/admin/login/")
    page.fill("input[name=username]", lead.username)
    page.fill("input[name=password]", "pw-lead-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def test_the_cockpit_follows_the_round_live_and_releases_a_stale_lease(cockpit_page, transactional_db):
    taste = services.taste_create(slug="portraits")
    round_ = make_round(taste, pairs=2, overlap=1)
    round_.label_quota = 2
    round_.save(update_fields=["label_quota"])
    working, closed_tab = make_annotator(taste, "working"), make_annotator(taste, "closed-tab")
    stale = services.assignment_claim(annotator=closed_tab, taste=taste, count=1)[0]
    Assignment.objects.filter(pk=stale.pk).update(claimed_at=timezone.now() - timezone.timedelta(minutes=6))
    lead = make_lead("lena")

    page = cockpit_page
    log_in_as_lead(page, lead)
    page.goto(f"/admin/annotate/round/{round_.pk}/change/")
    expect(page.locator('[data-count="annotation"]')).to_have_text("0 / 2 labels")
    expect(page.locator('[data-field="waits"]')).to_contain_text("1 outstanding lease, held by closed-tab (1)")

    assignment = services.assignment_claim(annotator=working, taste=taste, count=1)[0]
    services.judgement_submit(annotator=working, assignment_id=assignment.pk, choice="left", client_uuid=uuid.uuid4())
    expect(page.locator('[data-count="annotation"]')).to_have_text("1 / 2 labels")  # no reload: the page polls
    expect(page.locator('[data-field="waits"]')).to_contain_text("1 more train label (1 of 2 in)")

    page.click("button[value=release]")
    expect(page.locator(".messagelist")).to_contain_text("released 1 lease idle for 5 minutes or more")
    expect(page.locator('[data-field="waits"]')).not_to_contain_text("closed-tab")
    assert Assignment.objects.get(pk=stale.pk).state == "expired"


def test_cancel_asks_first_and_a_dismissed_question_leaves_the_round_running(cockpit_page, transactional_db):
    taste = services.taste_create(slug="portraits")
    round_ = make_round(taste, pairs=2, overlap=1)
    page = cockpit_page
    log_in_as_lead(page, make_lead("lena"))
    page.goto(f"/admin/annotate/round/{round_.pk}/change/")
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    page.click("button[value=cancel]")
    page.wait_for_timeout(500)
    round_.refresh_from_db()
    assert round_.state == "annotating" and "cannot be resumed" in questions[0]

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    page.click("button[value=cancel]")
    expect(page.locator(".messagelist")).to_contain_text("Cancel: done")
    round_.refresh_from_db()
    assert round_.state == "cancelled" and len(questions) == 2
