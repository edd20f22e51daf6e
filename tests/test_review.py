"""The lead's review of a round and the pair/judgement admin pages with their images (annotate/review.py)."""

import re
import uuid

import pytest
from django.test import Client

from annotate import services
from annotate.models import Judgement, Pair
from tests.conftest import make_annotator, make_round

pytestmark = pytest.mark.django_db


def judge_all(annotator, taste, decide, *, flags_a=(), duration_ms=1500) -> None:
    """`annotator` judges every pair they can get; `decide(pair)` answers relative to images A/B."""
    while claimed := services.assignment_claim(annotator=annotator, taste=taste):
        (assignment,) = claimed
        choice = decide(assignment.pair)
        on_left = "a" if assignment.left_is_a else "b"
        screen = choice if choice in ("tie", "both_bad") else ("left" if choice == on_left else "right")
        flags = {"flags_left" if assignment.left_is_a else "flags_right": list(flags_a)}
        services.judgement_submit(annotator=annotator, assignment_id=assignment.pk, choice=screen,
                                  client_uuid=uuid.uuid4(), duration_ms=duration_ms, **flags)


def review_url(round_, **query) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/admin/annotate/round/{round_.pk}/review/" + (f"?{params}" if params else "")


def shown_pairs(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-pair="(\d+)"', html)]


@pytest.fixture
def judged_round(taste):
    """Six pairs judged by alice and bob: they disagree on the 2nd and 5th pair; bob flags waxy skin on A."""
    round_ = make_round(taste, pairs=6)
    alice, bob = make_annotator(taste, "alice"), make_annotator(taste, "bob")
    pairs = list(round_.pairs.order_by("id"))
    disagreed = {pairs[1].pk, pairs[4].pk}
    judge_all(alice, taste, lambda pair: "a")
    judge_all(bob, taste, lambda pair: "b" if pair.pk in disagreed else "a", flags_a=["waxy_skin"], duration_ms=2500)
    return round_, alice, bob, pairs, disagreed


def test_disagreements_come_first_with_every_answer(lead_browser, judged_round):
    round_, alice, bob, pairs, disagreed = judged_round
    response = lead_browser.get(review_url(round_))
    assert response.status_code == 200
    html = response.content.decode()
    order = shown_pairs(html)
    assert set(order[:2]) == disagreed and sorted(order) == sorted(p.pk for p in pairs)
    assert "6 pairs, 6 judged at least once" in html and "2 with answers that differ" in html
    first = html[html.index(f'data-pair="{order[0]}"'):html.index(f'data-pair="{order[1]}"')]
    # Both images link to full size through the authenticated media view, enlarged with crisp pixels.
    pair = Pair.objects.select_related("image_a", "image_b").get(pk=order[0])
    for image in (pair.image_a, pair.image_b):
        assert f'<a href="/media/{image.file.name}"' in first
    assert "image-rendering:pixelated" in first
    # Every answer: who, the choice mapped to an image, flags per image, duration.
    assert "answers differ" in first
    rows = {row.split("<td>")[1].split("</td>")[0]: row for row in first.split('<tr class="answer')[1:]}
    assert "<strong>A</strong>" in rows["alice"] and "waxy_skin" not in rows["alice"]
    assert "<strong>B</strong>" in rows["bob"] and "waxy_skin" in rows["bob"] and "2.5 s" in rows["bob"]
    assert lead_browser.get(f"/media/{pair.image_a.file.name}").status_code == 200


def test_filters_by_annotator_kind_and_disagreement(lead_browser, judged_round, taste):
    round_, alice, bob, pairs, disagreed = judged_round
    make_annotator(taste, "carol")  # in the cohort, but answered nothing: not offered as a filter
    html = lead_browser.get(review_url(round_, annotator=bob.pk)).content.decode()
    assert len(shown_pairs(html)) == 6 and f'value="{bob.pk}" selected' in html and "carol" not in html
    only = lead_browser.get(review_url(round_, disagreements=1)).content.decode()
    assert set(shown_pairs(only)) == disagreed
    assert shown_pairs(lead_browser.get(review_url(round_, kind="eval")).content.decode()) == []
    assert len(shown_pairs(lead_browser.get(review_url(round_, kind="train")).content.decode())) == 6


def test_annotator_filter_keeps_only_their_pairs(lead_browser, taste):
    round_ = make_round(taste, pairs=4, overlap=1)
    alice, bob = make_annotator(taste, "alice"), make_annotator(taste, "bob")
    for _ in range(2):
        (assignment,) = services.assignment_claim(annotator=alice, taste=taste)
        services.judgement_submit(annotator=alice, assignment_id=assignment.pk, choice="tie", client_uuid=uuid.uuid4())
    judge_all(bob, taste, lambda pair: "b")
    mine = set(Judgement.objects.filter(annotator=alice).values_list("pair_id", flat=True))
    html = lead_browser.get(review_url(round_, annotator=alice.pk)).content.decode()
    assert set(shown_pairs(html)) == mine and len(mine) == 2
    assert "bob" not in html.split('id="review-filters"')[1].split("</form>")[1]


def test_pages_and_query_count_do_not_grow_with_the_page(lead_browser, taste, django_assert_max_num_queries):
    round_ = make_round(taste, pairs=30)
    alice, bob = make_annotator(taste, "alice"), make_annotator(taste, "bob")
    judge_all(alice, taste, lambda pair: "a")
    judge_all(bob, taste, lambda pair: "b" if pair.pk % 3 == 0 else "a")
    for per_page in (2, 30):
        with django_assert_max_num_queries(10):  # one is the lead's group permissions (leads are not superusers)
            response = lead_browser.get(review_url(round_, per_page=per_page))
        assert len(shown_pairs(response.content.decode())) == per_page
    first, second = (shown_pairs(lead_browser.get(review_url(round_, per_page=20, page=n)).content.decode())
                     for n in (1, 2))
    assert (len(first), len(second)) == (20, 10)
    assert sorted(first + second) == sorted(round_.pairs.values_list("id", flat=True))


def test_only_leads_see_the_review(judged_round, annotator):
    round_ = judged_round[0]
    browser = Client()
    assert browser.get(review_url(round_)).status_code == 302  # to the admin login
    browser.force_login(annotator)
    response = browser.get(review_url(round_))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_round_list_links_to_the_review(lead_browser, judged_round):
    round_ = judged_round[0]
    assert review_url(round_) in lead_browser.get("/admin/annotate/round/").content.decode()


def test_pair_and_judgement_pages_show_both_images(lead_browser, judged_round):
    round_, alice, bob, pairs, disagreed = judged_round
    pair = Pair.objects.select_related("image_a", "image_b").get(pk=sorted(disagreed)[0])
    urls = [f"/media/{pair.image_a.file.name}", f"/media/{pair.image_b.file.name}"]
    pages = ["/admin/annotate/pair/", f"/admin/annotate/pair/{pair.pk}/change/", "/admin/annotate/judgement/",
             f"/admin/annotate/judgement/{Judgement.objects.get(pair=pair, annotator=bob).pk}/change/"]
    for page in pages:
        html = lead_browser.get(page).content.decode()
        assert all(f'<a href="{url}"' in html for url in urls), page
    judgement_page = lead_browser.get(pages[3]).content.decode()
    assert judgement_page.count("outline:3px solid") == 1  # bob chose B: only B is outlined
    pair_page = lead_browser.get(pages[1]).content.decode()
    assert review_url(round_) in pair_page and "alice" in pair_page and "waxy_skin" in pair_page  # and every answer
