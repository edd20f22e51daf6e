"""The judging page in Chromium, continued: header counts, waiting reasons, logging out, undo, guidelines."""

import pytest
from playwright.sync_api import expect

from annotate.models import Assignment, Judgement, Pair, Round, Taste
from tests.conftest import make_annotator, make_round, wait_until
from tests.test_annotate_page import drained, log_in, next_after, page, shown, taste  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_after_a_reload_the_header_counts_the_judgements_still_in_the_outbox(page, taste):
    make_round(taste, pairs=8, overlap=1)
    log_in(page, make_annotator(taste))
    page.route("**/api/v1/judgements/", lambda route: route.abort())  # the network is down
    current = shown(page)
    for key in ("1", "2", "3"):
        page.keyboard.press(key)
        current = next_after(page, current)
    expect(page.locator("#progress")).to_have_text("3 today · 3 in round 1")
    page.reload()
    shown(page)
    expect(page.locator("#pending")).to_have_text("3 waiting")
    expect(page.locator("#progress")).to_have_text("3 today · 3 in round 1")
    assert not Judgement.objects.exists()
    page.unroute("**/api/v1/judgements/")
    drained(page)
    page.reload()
    shown(page)
    expect(page.locator("#progress")).to_have_text("3 today · 3 in round 1")  # counted once, by the server now


def test_the_page_says_the_round_is_paused_then_carries_on(page, taste):
    round_ = make_round(taste, pairs=2, overlap=1)
    Round.objects.filter(pk=round_.pk).update(paused=True)
    log_in(page, make_annotator(taste))
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#empty")).to_have_attribute("data-waiting", "paused")
    expect(page.locator("#empty")).to_contain_text("The round is paused.")
    Round.objects.filter(pk=round_.pk).update(paused=False)
    shown(page)
    expect(page.locator("#empty")).to_be_hidden()


def test_the_page_says_the_worker_is_sampling_when_the_annotator_judged_everything(page, taste):
    round_ = make_round(taste, pairs=1, overlap=2)
    Round.objects.filter(pk=round_.pk).update(pair_quota=10)
    log_in(page, make_annotator(taste))
    first = shown(page)
    page.keyboard.press("1")
    expect(page.locator("#empty")).to_have_attribute("data-waiting", "sampling")
    expect(page.locator("#empty")).to_contain_text("Waiting for the worker: new pairs are being sampled.")


def test_the_judging_page_logs_out_and_hands_its_pairs_back(page, taste):
    make_round(taste, pairs=5, overlap=1)
    annotator = make_annotator(taste)
    log_in(page, annotator)
    shown(page)
    # On screen and 3 ahead: the prefetch is a request of its own, which may land after the first pair shows.
    wait_until(lambda: Assignment.objects.filter(annotator=annotator, state="leased").count() == 4, timeout=15,
               what="the pair on screen and 3 prefetched")
    page.click("#logout button")
    page.wait_for_url("**/login/")
    # Nobody will judge the pairs that were on that screen: they go back to the pool now, not when leases run out.
    assert not Assignment.objects.filter(annotator=annotator, state="leased").exists()
    assert sum(Pair.objects.values_list("assigned_count", flat=True)) == 0
    page.goto("/annotate/portraits/")
    page.wait_for_url("**/login/?next=/annotate/portraits/")


def test_logout_by_get_asks_first_instead_of_a_blank_405(page, taste):
    annotator = make_annotator(taste)
    log_in(page, annotator)
    response = page.goto("/logout/")
    assert response.status == 200
    expect(page.locator("main")).to_contain_text(f"Log out of Chisel as {annotator.username}?")
    page.click("main button[type=submit]")
    page.wait_for_url("**/login/")
    page.goto("/logout/")  # logged out already: to the login page
    page.wait_for_url("**/login/")


def test_logging_out_with_judgements_in_the_outbox_asks_first(page, taste):
    make_round(taste, pairs=3, overlap=1)
    log_in(page, make_annotator(taste))
    page.route("**/api/v1/judgements/", lambda route: route.abort())
    first = shown(page)
    page.keyboard.press("1")
    next_after(page, first)
    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.click("#logout button")
    assert dialogs and "1 judgement(s) have not reached the server yet" in dialogs[0]
    assert page.url.endswith("/annotate/portraits/")


def boxes_overlap(a, b) -> bool:
    across = a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
    return across and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]


def test_the_undo_message_covers_no_chip_and_goes_when_the_pair_is_judged_again(page, taste):
    make_round(taste, pairs=4, overlap=1)
    log_in(page, make_annotator(taste))
    first = shown(page)
    page.keyboard.press("1")
    next_after(page, first)
    page.keyboard.press("Backspace")
    page.wait_for_function(f"document.getElementById('stage').dataset.assignment === '{first}'")
    toast = page.locator("#toast")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("Undone (left): choose again.")
    box = toast.bounding_box()
    for chip in page.locator(".chip").all():
        assert not boxes_overlap(box, chip.bounding_box()), chip.text_content()
    for button in page.locator(".actions button").all():
        assert not boxes_overlap(box, button.bounding_box()), button.text_content()
    page.keyboard.press("2")
    expect(toast).to_be_hidden(timeout=1000)  # at once, not 4 s later


GUIDELINES = (
    "# What we want\n\nPrefer **sharp eyes**; see [the board](https://example.org/board).\n\n"
    "<script>window.pwned = 1</script>"
)


def test_guidelines_show_on_the_first_visit_not_the_second_and_on_g(page, taste):
    Taste.objects.filter(pk=taste.pk).update(guidelines=GUIDELINES)
    make_round(taste, pairs=3, overlap=1)
    log_in(page, make_annotator(taste))
    guidelines = page.locator("#guidelines")
    expect(guidelines).to_be_visible()
    expect(guidelines.locator("h1")).to_have_text("What we want")
    expect(guidelines.locator("strong")).to_have_text("sharp eyes")
    expect(guidelines.locator("a")).to_have_attribute("href", "https://example.org/board")
    expect(guidelines).to_contain_text("<script>window.pwned = 1</script>")  # shown as text, never run
    assert guidelines.locator("script").count() == 0 and page.evaluate("window.pwned") is None
    first = shown(page)
    page.keyboard.press("1")  # keys do not judge behind the guidelines
    page.wait_for_timeout(200)
    assert int(page.get_attribute("#stage", "data-assignment")) == first
    page.keyboard.press("Escape")
    expect(guidelines).to_be_hidden()

    page.reload()  # the second visit goes straight to judging
    shown(page)
    expect(guidelines).to_be_hidden()
    page.keyboard.press("g")
    expect(guidelines).to_be_visible()
    page.keyboard.press("g")
    expect(guidelines).to_be_hidden()
    page.keyboard.press("?")
    expect(page.locator("#help")).to_contain_text("the taste's guidelines")

    Taste.objects.filter(pk=taste.pk).update(guidelines=GUIDELINES + "\n\nAlso: no text in images.")
    page.reload()  # changed guidelines count as new
    expect(guidelines).to_be_visible()
    expect(guidelines).to_contain_text("no text in images")
    page.click("#guidelines-close")
    expect(guidelines).to_be_hidden()


def test_a_taste_without_guidelines_opens_straight_to_judging(page, taste):
    make_round(taste, pairs=2, overlap=1)
    log_in(page, make_annotator(taste))
    shown(page)
    expect(page.locator("#guidelines")).to_be_hidden()
    page.keyboard.press("g")
    expect(page.locator("#guidelines")).to_contain_text("no written guidelines yet")
