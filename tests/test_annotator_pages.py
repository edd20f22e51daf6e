"""The lead's annotator pages in the admin: table, heat map, camps with the one-click split, one annotator's answers."""

import re

from django.urls import reverse

from annotate.models import Pair, Taste, TasteMembership
from tests.conftest import client_for, make_round
from tests.test_annotator_stats import _cohort, _play, _policies


def test_annotator_table_heat_map_camps_split_and_an_annotators_answers(taste, lead_browser):
    round_ = make_round(taste, pairs=40, overlap=4)
    first = Pair.objects.filter(round=round_).order_by("id").first()
    cohort = _cohort(taste, [("red", 3), ("blue", 3)], _policies(first.image_a.file.url, first.pk))
    _play(taste, cohort)
    users = {user.username: user for user, _ in cohort}

    page = lead_browser.get(reverse("admin:annotate_taste_annotators", args=[taste.pk]) + "?sort=-judged")
    html = page.content.decode()
    assert page.status_code == 200
    assert "This taste holds 2 camps" in html and 'id="split-form"' in html
    assert html.count('class="spark"') == 6 and 'aria-label="agreement between annotators"' in html  # sparklines, heat map
    judged = [int(n) for n in re.findall(r'data-user="[^"]+">\s*<td>.*?</td>\s*<td>(\d+)</td>', html, re.S)]
    assert judged == sorted(judged, reverse=True) and len(judged) == 6
    # The split form offers the last camp, ticked.
    ticked = set(re.findall(r'name="annotator" value="(\d+)" checked', html))
    assert ticked in ({str(users[f"red-{i}"].pk) for i in range(3)}, {str(users[f"blue-{i}"].pk) for i in range(3)})

    change = lead_browser.get(reverse("admin:annotate_taste_change", args=[taste.pk])).content.decode()
    assert "<strong>2 camps</strong>" in change and "Evidence and split" in change

    red = users["red-0"]
    answers = lead_browser.get(reverse("admin:annotate_taste_annotator", args=[taste.pk, red.pk])).content.decode()
    rows = re.findall(r'<td class="answer">(\w+)</td><td class="majority">([\w—]+)</td>', answers)
    assert rows and all(mine == "a" for mine, _ in rows)  # image A is the red one
    assert {majority for _, majority in rows} <= {"a", "b", "—"}

    blue_ids = [users[f"blue-{i}"].pk for i in range(3)]
    extra = make_round(taste, pairs=2, overlap=2)  # blue-0 holds a lease in the old taste when it splits
    held = client_for(users["blue-0"]).get("/api/v1/assignments/next/", {"taste": taste.slug}).json()[0]
    assert Pair.objects.get(assignments__pk=held["id"]).assigned_count == 1
    response = lead_browser.post(reverse("admin:annotate_taste_annotators", args=[taste.pk]),
                                 {"annotator": blue_ids, "slug": "portraits-flat", "name": "Portraits, flat"})
    assert response.status_code == 302
    new = Taste.objects.get(slug="portraits-flat")
    assert new.current_checkpoint_id == taste.current_checkpoint_id
    assert set(TasteMembership.objects.filter(taste=new).values_list("annotator_id", flat=True)) == set(blue_ids)
    assert not TasteMembership.objects.filter(taste=taste, annotator_id__in=blue_ids).exists()
    assert Pair.objects.get(assignments__pk=held["id"]).assigned_count == 0  # the lease went back to the old taste's pool
    late = {"assignment": held["id"], "choice": "left", "client_uuid": "00000000-0000-4000-8000-000000000001"}
    assert client_for(users["blue-0"]).post("/api/v1/judgements/", late, format="json").status_code >= 400
    assert extra.pairs.filter(judged_count__gt=0).count() == 0
    # The other camp can no longer judge the old taste's pairs, nor the new one's.
    blue = users["blue-0"]
    assert client_for(blue).get("/api/v1/assignments/next/", {"taste": taste.slug}).status_code == 403
    assert client_for(red).get("/api/v1/assignments/next/", {"taste": new.slug}).status_code == 403
    # A split that would take everybody, or nobody, is refused with a message.
    again = lead_browser.post(reverse("admin:annotate_taste_annotators", args=[taste.pk]),
                              {"annotator": [], "slug": "x"}, follow=True)
    assert "Choose the annotators" in again.content.decode()


def test_gold_admin_actions(taste, lead_browser):
    round_ = make_round(taste, pairs=3, overlap=2)
    ids = list(Pair.objects.filter(round=round_).values_list("pk", flat=True))
    url = reverse("admin:annotate_pair_changelist")
    lead_browser.post(url, {"action": "mark_gold_b", "_selected_action": ids[:2]})
    assert list(Pair.objects.order_by("id").values_list("kind", "gold_choice", "overlap")) == [
        ("gold", "b", Pair.GOLD_OVERLAP), ("gold", "b", Pair.GOLD_OVERLAP), ("train", "", 2)]
    lead_browser.post(url, {"action": "unmark_gold", "_selected_action": ids[:1]})
    assert Pair.objects.get(pk=ids[0]).kind == "train" and Pair.objects.get(pk=ids[0]).overlap == 2


def test_a_judged_pair_is_made_gold_from_its_page_and_served_in_a_later_round(taste, lead_browser):
    import uuid

    from annotate.models import Judgement, Round
    from tests.conftest import make_annotator

    first = make_round(taste, pairs=2, overlap=2)
    judges = [make_annotator(taste) for _ in range(2)]
    for user in judges:  # both judge both pairs, as they see them
        for item in client_for(user).get("/api/v1/assignments/next/", {"taste": taste.slug, "prefetch": 2}).json():
            assert client_for(user).post("/api/v1/judgements/", {"assignment": item["id"], "choice": "left",
                                                                 "client_uuid": str(uuid.uuid4())},
                                         format="json").status_code == 201
    pair = Pair.objects.filter(round=first).order_by("id").first()
    answers = Judgement.objects.filter(pair=pair)
    counted = {choice: answers.filter(choice=choice).count() for choice in ("a", "b")}

    # The annotator's page links each of their pairs to the pair's page, which shows its answers and the buttons.
    annotator_page = lead_browser.get(reverse("admin:annotate_taste_annotator", args=[taste.pk, judges[0].pk]))
    pair_url = reverse("admin:annotate_pair_change", args=[pair.pk])
    assert f'href="{pair_url}"' in annotator_page.content.decode()
    page = lead_browser.get(pair_url).content.decode()
    assert f"Answers so far: A {counted['a']} · B {counted['b']} · tie 0 · both bad 0" in page
    assert 'value="b">Gold: expect B</button>' in page

    Round.objects.filter(pk=first.pk).update(state=Round.State.DONE)  # the lead picks gold among past rounds' pairs
    done = lead_browser.post(reverse("admin:annotate_pair_gold", args=[pair.pk]), {"choice": "b"}, follow=True)
    assert f"Pair {pair.pk} is gold, expecting image B" in done.content.decode()
    pair.refresh_from_db()
    assert (pair.kind, pair.gold_choice) == ("gold", "b")
    assert 'id="gold-choice">B</strong>' in lead_browser.get(pair_url).content.decode()

    # A newcomer gets it in the taste's next round (gold share 1: gold first) and may judge it although its own
    # round is done; the two who judged it as a training pair never get it again.
    Taste.objects.filter(pk=taste.pk).update(gold_share=1.0)
    make_round(taste, pairs=2, overlap=3)
    newcomer = make_annotator(taste)
    (item,) = client_for(newcomer).get("/api/v1/assignments/next/", {"taste": taste.slug}).json()
    from annotate.models import Assignment

    assert Assignment.objects.get(pk=item["id"]).pair_id == pair.pk
    assert client_for(newcomer).post("/api/v1/judgements/", {"assignment": item["id"], "choice": "left",
                                                             "client_uuid": str(uuid.uuid4())},
                                     format="json").status_code == 201
    for user in judges:
        served = client_for(user).get("/api/v1/assignments/next/", {"taste": taste.slug, "prefetch": 3})
        items = served.json()  # the new round's pairs, never the gold one they judged
        assert items and pair.pk not in {Assignment.objects.get(pk=i["id"]).pair_id for i in items}

    # No taste round open: no gold is served. An eval pair cannot be gold (one line on the page); annotators cannot.
    Round.objects.filter(taste=taste).update(state=Round.State.DONE)
    assert client_for(make_annotator(taste)).get("/api/v1/assignments/next/", {"taste": taste.slug}).status_code == 204
    eval_pair = Pair.objects.filter(round=first).order_by("id").last()
    Pair.objects.filter(pk=eval_pair.pk).update(kind="eval")
    refused = lead_browser.post(reverse("admin:annotate_pair_gold", args=[eval_pair.pk]), {"choice": "a"}, follow=True)
    assert f"There is no training or gold pair {eval_pair.pk}." in refused.content.decode()
    assert "Gold answer" not in lead_browser.get(reverse("admin:annotate_pair_change", args=[eval_pair.pk])).content.decode()
    from django.test import Client

    staff = Client()
    staff.force_login(judges[0])
    assert staff.post(reverse("admin:annotate_pair_gold", args=[pair.pk]), {"choice": "a"}).status_code in (302, 403)
    pair.refresh_from_db()
    assert pair.gold_choice == "b"


def test_import_gold_marks_all_rows_or_none(taste, tmp_path):
    import io

    import pytest
    from django.core.management import CommandError, call_command

    round_ = make_round(taste, pairs=3, overlap=2)
    ids = list(Pair.objects.filter(round=round_).order_by("id").values_list("pk", flat=True))
    bad = tmp_path / "bad.csv"
    bad.write_text(f"pair_id,choice\n{ids[0]},a\n{ids[1]},left\n")
    with pytest.raises(CommandError, match=r"bad.csv line 3: choice is 'left'; expected one of a, b, tie. Nothing"):
        call_command("import_gold", str(bad))
    missing = tmp_path / "missing.csv"
    missing.write_text(f"pair_id,choice\n{ids[0]},a\n999999,b\n")
    with pytest.raises(CommandError, match="line 3: There is no training or gold pair 999999"):
        call_command("import_gold", str(missing))
    assert not Pair.objects.filter(kind="gold").exists()
    good = tmp_path / "good.csv"
    good.write_text(f"pair_id,choice\n{ids[0]},a\n{ids[2]},tie\n")
    out = io.StringIO()
    call_command("import_gold", str(good), stdout=out)
    assert out.getvalue().strip() == "2 pair(s) are gold."
    assert dict(Pair.objects.filter(kind="gold").values_list("pk", "gold_choice")) == {ids[0]: "a", ids[2]: "tie"}
