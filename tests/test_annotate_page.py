"""The judging page in real Chromium (Debian's, driven by Playwright) against a live server."""

import random

import pytest
from playwright.sync_api import Page, expect

from annotate.models import Assignment, Judgement, Pair
from tests.conftest import make_annotator, make_round, services

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
KEY_CHOICE = {"1": "left", "ArrowLeft": "left", "2": "right", "ArrowRight": "right", "3": "tie", "0": "both_bad"}


@pytest.fixture
def taste(transactional_db):
    return services.taste_create(slug="portraits", name="Portraits")


@pytest.fixture
def page(browser, live_server, taste) -> Page:
    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids (test_csp_pages.py
    # checks the page under its policy).
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_server.url, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


def log_in(page: Page, user) -> None:
    page.goto("/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", "pw-annotator-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/annotate/portraits/")


def shown(page: Page) -> int:
    page.wait_for_function("document.getElementById('stage').dataset.assignment !== undefined")
    return int(page.get_attribute("#stage", "data-assignment"))


def next_after(page: Page, previous: int) -> int:
    page.wait_for_function(f"document.getElementById('stage').dataset.assignment !== '{previous}'")
    return shown(page)


def drained(page: Page) -> None:
    expect(page.locator("#pending")).to_be_hidden()


def stored(choice: str, assignment: Assignment) -> str:
    if choice in ("tie", "both_bad"):
        return choice
    return "a" if (choice == "left") == assignment.left_is_a else "b"


def test_judging_twenty_pairs_by_keyboard_stores_the_right_a_b_choice(page, taste):
    make_round(taste, pairs=24, overlap=1)
    annotator = make_annotator(taste)
    log_in(page, annotator)
    rng = random.Random(7)
    pressed = {}
    current = shown(page)
    for _ in range(20):
        key = rng.choice(list(KEY_CHOICE))
        page.keyboard.press(key)
        pressed[current] = KEY_CHOICE[key]
        current = next_after(page, current)
    drained(page)
    judgements = {j.assignment_id: j for j in Judgement.objects.select_related("assignment")}
    assert len(judgements) == 20
    for assignment_id, choice in pressed.items():
        judgement = judgements[assignment_id]
        assert judgement.choice == stored(choice, judgement.assignment), assignment_id
        assert judgement.duration_ms is not None and judgement.duration_ms >= 0
    assert {j.assignment.left_is_a for j in judgements.values()} == {True, False}  # sides really were mixed
    expect(page.locator("#progress")).to_contain_text("20 today")
    # The page holds the pair on screen and three ahead, no more: leases are not hoarded.
    assert Assignment.objects.filter(annotator=annotator, state=Assignment.State.LEASED).count() <= 4


def test_undo_brings_the_pair_back_and_the_new_choice_replaces_the_old(page, taste):
    make_round(taste, pairs=5, overlap=1)
    annotator = make_annotator(taste)
    log_in(page, annotator)
    first = shown(page)
    page.keyboard.press("1")
    next_after(page, first)
    drained(page)
    page.keyboard.press("Backspace")
    page.wait_for_function(f"document.getElementById('stage').dataset.assignment === '{first}'")
    page.keyboard.press("2")
    next_after(page, first)
    drained(page)
    judgement = Judgement.objects.select_related("assignment").get()
    assert judgement.assignment_id == first
    assert judgement.choice == stored("right", judgement.assignment)
    assert judgement.amendments == 1


def test_skip_releases_the_pair(page, taste):
    make_round(taste, pairs=3, overlap=1)
    annotator = make_annotator(taste)
    log_in(page, annotator)
    first = shown(page)
    page.keyboard.press("s")
    next_after(page, first)
    drained(page)
    assert Assignment.objects.get(pk=first).state == Assignment.State.SKIPPED
    assert Pair.objects.get(assignments__pk=first).assigned_count == 0
    assert not Judgement.objects.exists()


def test_flags_are_stored_per_image(page, taste):
    make_round(taste, pairs=3, overlap=1)
    annotator = make_annotator(taste)
    log_in(page, annotator)
    first = shown(page)
    page.keyboard.press("q")  # left: waxy skin
    page.keyboard.press("u")  # left: doesn't match the prompt
    page.keyboard.press("Shift+Y")  # right: artifacts
    page.click("#chips-right .chip[data-flag=flat_colour]")
    expect(page.locator("#chips-left .chip[data-flag=off_prompt]")).to_contain_text("Doesn't match the prompt")
    expect(page.locator("#help-flags")).to_contain_text("u/⇧U doesn't match the prompt")
    expect(page.locator("#chips-left .chip.on")).to_have_count(2)
    expect(page.locator("#chips-right .chip.on")).to_have_count(2)
    page.keyboard.press("3")
    next_after(page, first)
    drained(page)
    judgement = Judgement.objects.select_related("assignment").get()
    left, right = ["off_prompt", "waxy_skin"], ["artifacts", "flat_colour"]
    expected = (left, right) if judgement.assignment.left_is_a else (right, left)
    assert (judgement.flags_a, judgement.flags_b) == expected
    expect(page.locator(".chip.on")).to_have_count(0)  # the next pair starts clean


def test_loupe_and_flicker_toggle(page, taste):
    make_round(taste, pairs=2, overlap=1)
    log_in(page, make_annotator(taste))
    shown(page)
    page.mouse.move(300, 400)
    page.keyboard.down("z")
    expect(page.locator("#loupe-left")).to_be_visible()
    expect(page.locator("#loupe-right")).to_be_visible()
    left_bg = page.eval_on_selector("#loupe-left", "e => e.style.backgroundPosition")
    right_bg = page.eval_on_selector("#loupe-right", "e => e.style.backgroundPosition")
    assert left_bg == right_bg and left_bg  # the same spot of both images
    page.keyboard.up("z")
    expect(page.locator("#loupe-left")).to_be_hidden()
    page.keyboard.press("f")
    expect(page.locator("#flicker")).to_be_visible()
    labels = set()
    for _ in range(20):
        labels.add(page.text_content("#flicker-label"))
        page.wait_for_timeout(60)
    assert labels == {"Left (1)", "Right (2)"}
    page.keyboard.press("f")
    expect(page.locator("#flicker")).to_be_hidden()


def test_a_submission_answered_503_is_retried_and_stored_once(page, taste):
    make_round(taste, pairs=3, overlap=1)
    log_in(page, make_annotator(taste))
    calls = []

    def flaky(route):
        calls.append(route.request.post_data_json["client_uuid"])
        if len(calls) == 1:
            route.fulfill(status=503, body="Service Unavailable")
        else:
            route.continue_()

    page.route("**/api/v1/judgements/", flaky)
    first = shown(page)
    page.keyboard.press("1")
    next_after(page, first)
    drained(page)
    assert len(calls) == 2 and calls[0] == calls[1]  # the retry carries the same client_uuid
    assert Judgement.objects.filter(assignment_id=first).count() == 1


def test_reloading_mid_queue_loses_nothing(page, taste):
    make_round(taste, pairs=8, overlap=1)
    log_in(page, make_annotator(taste))
    page.route("**/api/v1/judgements/", lambda route: route.abort())  # the network is down
    judged = []
    current = shown(page)
    for key in ("1", "2", "3"):
        page.keyboard.press(key)
        judged.append(current)
        current = next_after(page, current)
    expect(page.locator("#pending")).to_have_text("3 waiting")
    assert not Judgement.objects.exists()
    page.unroute("**/api/v1/judgements/")
    page.reload()
    after_reload = shown(page)
    drained(page)
    assert sorted(Judgement.objects.values_list("assignment_id", flat=True)) == sorted(judged)
    assert after_reload not in judged


def test_an_empty_queue_waits_and_resumes_by_itself(page, taste):
    log_in(page, make_annotator(taste))
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#empty")).to_contain_text("Nothing left for you in this round")  # no round is open
    make_round(taste, pairs=2, overlap=1)
    page.wait_for_function("document.getElementById('stage').dataset.assignment !== undefined", timeout=15000)
    expect(page.locator("#empty")).to_be_hidden()


@pytest.mark.parametrize("viewport", [(1280, 800), (3840, 2160)])
def test_images_fit_the_screen_and_nothing_jumps_between_pairs(browser, live_server, taste, viewport):
    make_round(taste, pairs=3, overlap=1)
    annotator = make_annotator(taste)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, base_url=live_server.url,
                                  bypass_csp=True)
    page = context.new_page()
    try:
        log_in(page, annotator)
        first = shown(page)
        frames = [page.locator(f"#frame-{side}").bounding_box() for side in ("left", "right")]
        for box in frames:
            assert box["y"] + box["height"] <= viewport[1] and box["x"] + box["width"] <= viewport[0]
        image = page.locator("#frame-left img").bounding_box()
        # 8×8 test images are scaled up by a whole number, as large as the frame allows.
        assert image["width"] == image["height"] and image["width"] % 8 == 0
        assert image["width"] > min(frames[0]["width"], frames[0]["height"]) - 8
        assert "pixelated" in page.get_attribute("#frame-left img", "class")
        page.keyboard.press("1")
        next_after(page, first)
        assert [page.locator(f"#frame-{side}").bounding_box() for side in ("left", "right")] == frames
    finally:
        context.close()


def test_an_annotator_with_several_tastes_picks_one(page, taste):
    other = services.taste_create(slug="landscapes", name="Landscapes")
    annotator = make_annotator(taste)
    services.annotator_join(annotator=annotator, taste=other)
    page.goto("/login/")
    page.fill("input[name=username]", annotator.username)
    page.fill("input[name=password]", "pw-annotator-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/annotate/")
    page.click("text=Landscapes")
    page.wait_for_url("**/annotate/landscapes/")
    expect(page.locator("#empty")).to_be_visible()
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
