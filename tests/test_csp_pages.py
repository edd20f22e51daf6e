"""The pages work under the Content-Security-Policy: no violation while judging, in the admin or in the API docs."""

import pytest
from playwright.sync_api import Page

from tests.conftest import make_annotator, make_lead, make_round, services
from tests.conftest import wait_until
from tests.test_annotate_page import log_in, taste  # noqa: F401 (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
WATCH = ("document.addEventListener('securitypolicyviolation',"
         " e => (window.cspViolations = window.cspViolations || []).push(e.violatedDirective + ' ' + e.blockedURI))")


def watched_page(browser, live_server) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_server.url)
    context.add_init_script(WATCH)
    page = context.new_page()
    page.set_default_timeout(15000)
    console = []
    page.on("console", lambda msg: console.append(msg.text) if "Content Security Policy" in msg.text else None)
    return page, console


def violations(page: Page, console: list[str]) -> list[str]:
    return [*(page.evaluate("window.cspViolations || []")), *console]


def test_judging_the_admin_and_the_api_docs_raise_no_csp_violation(browser, live_server, taste):
    round_ = make_round(taste, pairs=3)
    page, console = watched_page(browser, live_server)
    log_in(page, make_annotator(taste))
    # Polled with evaluate: wait_for_function would eval a string, which the policy (rightly) forbids.
    shown = "document.getElementById('stage').dataset.assignment"
    first = wait_until(lambda: page.evaluate(shown), timeout=15, what="a pair")
    page.keyboard.press("1")
    wait_until(lambda: page.evaluate(shown) not in (None, first), timeout=15, what="the next pair")
    loaded = "[...document.images].length > 0 && [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    wait_until(lambda: page.evaluate(loaded), timeout=15, what="the images")
    assert violations(page, console) == []
    page.context.close()

    page, console = watched_page(browser, live_server)
    lead = make_lead()
    page.goto("/admin/login/")
    page.fill("input[name=username]", lead.username)
    page.fill("input[name=password]", "pw-lead-1")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    for path in (f"/admin/annotate/round/{round_.pk}/change/", f"/admin/annotate/round/{round_.pk}/review/",
                 f"/admin/annotate/taste/{taste.pk}/charts/", "/admin/annotate/export/add/"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert violations(page, console) == [], path
    # The launch form: choosing a taste reloads it with that taste's settings (a script of the site, not inline).
    other = make_round(services.taste_create(slug="landscapes"), pairs=1).taste
    page.goto("/admin/annotate/round/launch/")
    page.select_option("select[name=taste]", other.slug)
    page.wait_for_url(f"**/admin/annotate/round/launch/?taste={other.slug}")
    assert violations(page, console) == []
    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20000)  # the UI ran and drew the operations
    assert violations(page, console) == []
    page.context.close()
