"""The lead's annotator figures over simulated cohorts judging through the real API: camps, gold, behaviour."""

import random
import uuid

import pyarrow.parquet as pq
import pytest

from annotate.errors import DomainError
from annotate.models import Assignment, Judgement, Pair, Round, Taste, TrainingJob
from annotate.training import training_dataset_export
from tests.conftest import client_for, make_annotator, make_lead, make_round


def _pair_id(item: dict) -> int:
    """The pair behind an assignment (the blind API names none; the test reads it from the database)."""
    return Assignment.objects.values_list("pair_id", flat=True).get(pk=item["id"])


def _policies(red_url: str, first_pair_id: int):
    def red(item):
        return ("left" if item["left"]["url"] == red_url else "right"), 2500

    def blue(item):
        return ("right" if item["left"]["url"] == red_url else "left"), 2500

    def coin(item):  # random, but the same answers on every run: seeded by the pair's place in the round
        prefers_red = random.Random(_pair_id(item) - first_pair_id).random() < 0.5
        return (red if prefers_red else blue)(item)[0], 3000

    def always_left(item):
        return "left", 150  # and faster than anybody can look

    return {"red": red, "blue": blue, "coin": coin, "always_left": always_left}


def _play(taste: Taste, cohort: list[tuple[object, object]]) -> list[dict]:
    """In passes, each annotator in a shuffled order (seeded) asks for one pair and answers it by their policy,
    until none gets any: a shuffled order mixes who shares pairs with whom, as people arriving at will do."""
    clients = [(client_for(user), policy) for user, policy in cohort]
    items, active, shuffle = [], set(range(len(clients))), random.Random(7).shuffle
    while active:
        order = sorted(active)
        shuffle(order)
        for k in order:
            api, policy = clients[k]
            response = api.get("/api/v1/assignments/next/", {"taste": taste.slug})
            if response.status_code == 204:
                active.discard(k)
                continue
            (item,) = response.json()
            items.append(item)
            choice, duration = policy(item)
            body = {"assignment": item["id"], "choice": choice, "client_uuid": str(uuid.uuid4()), "duration_ms": duration}
            assert api.post("/api/v1/judgements/", body, format="json").status_code == 201
    return items


def _cohort(taste, spec, policies):
    return [(make_annotator(taste, f"{name}-{i}"), policies[name]) for name, n in spec for i in range(n)]


def test_two_camps_are_separated_and_careless_annotators_flagged(taste):
    round_ = make_round(taste, pairs=80, overlap=4)
    first = Pair.objects.filter(round=round_).order_by("id").first()
    policies = _policies(first.image_a.file.url, first.pk)
    cohort = _cohort(taste, [("red", 3), ("blue", 3), ("coin", 1), ("always_left", 1)], policies)
    _play(taste, cohort)
    assert Judgement.objects.count() == 320

    lead = client_for(make_lead())
    stats = lead.get(f"/api/v1/tastes/{taste.slug}/annotators/").json()
    rows = {row["username"]: row for row in stats["annotators"]}

    assert stats["camps"]["split"] is True
    red_camps = {rows[f"red-{i}"]["camp"] for i in range(3)}
    blue_camps = {rows[f"blue-{i}"]["camp"] for i in range(3)}
    assert len(red_camps) == 1 and len(blue_camps) == 1 and red_camps != blue_camps
    assert stats["camps"]["across_agreement"] < 0.5 < stats["camps"]["within_agreement"]
    honest = [f"red-{i}" for i in range(3)] + [f"blue-{i}" for i in range(3)]
    for name in honest:
        # The server's coin puts the image they pick on the left: at 40 answers, 9 or fewer (or 31 or more) lefts
        # happen about once in a thousand, the position-bias flag's own false alarm (p < 0.001). Nothing else may
        # flag them.
        assert set(rows[name]["flags"]) <= {"position bias"}, (name, rows[name])
        assert rows[name]["camp_agreement"] > 0.7
    assert sum("position bias" in rows[name]["flags"] for name in honest) <= 1
    assert "agreement" in rows["coin-0"]["flags"]
    left = rows["always_left-0"]
    assert left["left_share"] == 1.0 and left["longest_streak"] == left["judged"]
    assert {"position bias", "speed"} <= set(left["flags"])
    assert left["too_fast_share"] == 1.0 and rows["red-0"]["too_fast_share"] == 0.0
    # Two opposed camps: α over everybody is low; the heat map is annotator × annotator.
    assert stats["alpha"] < 0.3
    assert len(stats["matrix"]["agreement"]) == 8 == len(stats["matrix"]["usernames"])
    assert stats["alpha_by_round"] == {str(round_.pk): stats["alpha"]}


def test_gold_pairs_are_served_blind_outside_overlap_and_score_the_annotators(taste, tmp_path):
    round_ = make_round(taste, pairs=40, overlap=3)
    first = Pair.objects.filter(round=round_).order_by("id").first()
    policies = _policies(first.image_a.file.url, first.pk)
    extra = make_round(taste, pairs=30, overlap=3, state="done")  # the same pictures, to be moved in as gold
    Pair.objects.filter(round=extra).update(round=round_, seed=None)
    gold_ids = list(Pair.objects.filter(round=round_, pk__gt=first.pk + 39).values_list("pk", flat=True))
    lead = client_for(make_lead())
    for pair_id in gold_ids:  # image A is the red one: the camp's expected answer
        assert lead.put(f"/api/v1/pairs/{pair_id}/gold/", {"choice": "a"}, format="json").status_code == 200
    assert client_for(make_annotator(taste)).put(f"/api/v1/pairs/{gold_ids[0]}/gold/", {"choice": "a"}).status_code == 403
    Taste.objects.filter(pk=taste.pk).update(gold_share=0.4)

    items = _play(taste, _cohort(taste, [("red", 3), ("coin", 1)], policies))
    gold_items = [i for i in items if _pair_id(i) in gold_ids]
    assert gold_items and sorted(gold_items[0]) == sorted(items[0])  # nothing in a gold item tells it apart
    # Every real pair got its three annotators; gold pairs were served beyond their round's overlap.
    assert set(Pair.objects.filter(round=round_, kind="train").values_list("judged_count", flat=True)) == {3}
    assert max(Pair.objects.filter(kind="gold").values_list("judged_count", flat=True)) == 4
    per_annotator = len(items) / 4
    assert 0.25 < len(gold_items) / len(items) < 0.5, (len(gold_items), per_annotator)

    rows = {r["username"]: r for r in lead.get(f"/api/v1/tastes/{taste.slug}/annotators/").json()["annotators"]}
    for i in range(3):
        red = rows[f"red-{i}"]
        assert red["gold_accuracy"] == 1.0 and red["gold_answered"] >= 10 and red["flags"] == []
        assert red["trust"] > 0.7
    coin = rows["coin-0"]
    assert "gold accuracy" in coin["flags"] and coin["gold_interval"][1] < 0.85
    assert coin["trust"] < 0.4

    # Training: gold never enters; a round that excludes untrusted annotators leaves the coin-flipper out, one
    # that weights by trust keeps everybody with their trust as the row's weight.
    job = TrainingJob.objects.create(round=round_)
    for mode, threshold in (("exclude", 0.5), ("weight", 0.5), ("exclude", 0.99)):
        Round.objects.filter(pk=round_.pk).update(trust_mode=mode, trust_threshold=threshold)
        job.round.refresh_from_db()
        if threshold == 0.99:
            with pytest.raises(DomainError, match="No annotator of portraits has a trust of 0.99"):
                training_dataset_export(job=job, run_dir=tmp_path / f"{mode}-{threshold}")
            continue
        table = pq.read_table(training_dataset_export(job=job, run_dir=tmp_path / f"{mode}-{threshold}")).to_pylist()
        assert {r["pair_kind"] for r in table} == {"train"}
        assert ("coin-0" in {r["annotator"] for r in table}) is (mode == "weight")
        for r in table:
            assert r["weight"] == (pytest.approx(rows[r["annotator"]]["trust"]) if mode == "weight" else 1.0)


def test_annotator_figures_are_for_leads_only(taste, annotator):
    assert client_for(annotator).get(f"/api/v1/tastes/{taste.slug}/annotators/").status_code == 403
    assert client_for(make_lead()).get("/api/v1/tastes/nope/annotators/").status_code == 404
    empty = client_for(make_lead()).get(f"/api/v1/tastes/{taste.slug}/annotators/").json()
    assert empty["alpha"] is None and empty["annotators"][0]["judged"] == 0
