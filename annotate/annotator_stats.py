"""The lead's figures on a taste's annotators: agreement, gold accuracy, behaviour, trust and camps (read only)."""

from collections import defaultdict

import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import BooleanField, Case, Count, Q, Value, When

from annotate import agreement as ag
from annotate.models import Assignment, Judgement, Pair, Taste

SPARK_BUCKETS = 12  # points on an annotator's agreement sparkline, over their answers in time order


def _judgement_rows(taste: Taste, round_id: int | None) -> list[tuple]:
    query = Judgement.objects.filter(pair__taste=taste)
    if round_id is not None:
        query = query.filter(pair__round_id=round_id)
    # Whether any flag was set, computed by the database: decoding 40,000 JSON lists cost a third of the page.
    no_flags = Q(flags_a=[]) & Q(flags_b=[])
    return list(
        query.annotate(flagged=Case(When(no_flags, then=Value(False)), default=Value(True), output_field=BooleanField()))
        .order_by("created_at", "id")
        .values_list(
            "annotator_id", "pair_id", "choice", "assignment__left_is_a", "duration_ms", "flagged", "flagged",
            "pair__kind", "pair__gold_choice", "pair__round_id",
        )
    )


def taste_annotator_stats(*, taste: Taste, round_id: int | None = None) -> dict:
    """Every figure of the lead's annotator table for `taste` (or one of its rounds); see annotate/agreement.py
    for how ties, both-bad answers and skips count."""
    rows = _judgement_rows(taste, round_id)
    skips_query = Assignment.objects.filter(pair__taste=taste, state=Assignment.State.SKIPPED)
    if round_id is not None:
        skips_query = skips_query.filter(pair__round_id=round_id)
    skips = dict(skips_query.values("annotator_id").annotate(n=Count("id")).values_list("annotator_id", "n"))
    member_ids = set(taste.annotators.values_list("pk", flat=True))
    annotator_ids = sorted(member_ids | {r[0] for r in rows} | set(skips))
    names = dict(get_user_model().objects.filter(pk__in=annotator_ids).values_list("pk", "username"))
    a_index = {a: i for i, a in enumerate(annotator_ids)}
    pair_ids = sorted({r[1] for r in rows})
    u_index = {p: i for i, p in enumerate(pair_ids)}
    n_ann, n_units = len(annotator_ids), len(pair_ids)

    r_idx = np.array([a_index[r[0]] for r in rows], dtype=np.int64)
    u_idx = np.array([u_index[r[1]] for r in rows], dtype=np.int64)
    codes = ag.category_codes([r[2] for r in rows])
    matrix = ag.reliability_matrix(r_idx, u_idx, codes, n_ann, n_units)
    agree, shared = ag.pairwise_agreement(matrix)
    share = ag.agreement_share(agree, shared)
    agreeing, compared = ag.agreement_with_rest(agree, shared)
    found = ag.camps(share)
    # Agreement within the annotator's own camp: in a taste that split, agreeing with the rest says little.
    labels = np.array(found.labels)
    same_camp = np.equal.outer(labels, labels) if n_ann else np.zeros((0, 0), dtype=bool)
    camp_agreeing, camp_compared = ag.agreement_with_rest(agree * same_camp, shared * same_camp)

    # Per answer: how many other annotators gave the same category on that pair, and how many answered it.
    counts = np.zeros((n_units, len(ag.CATEGORIES)), dtype=np.int64)
    valid = ~np.isnan(codes)
    np.add.at(counts, (u_idx[valid], codes[valid].astype(np.int64)), 1)
    same_others = np.zeros(len(rows))
    all_others = np.zeros(len(rows))
    same_others[valid] = counts[u_idx[valid], codes[valid].astype(np.int64)] - 1
    all_others[valid] = counts[u_idx[valid]].sum(axis=1) - 1

    per = defaultdict(list)
    for k, row in enumerate(rows):
        per[row[0]].append(k)
    table = []
    for a in annotator_ids:
        i = a_index[a]
        mine = per.get(a, [])
        my_rows = [rows[k] for k in mine]
        gold = [(r[2], r[8]) for r in my_rows if r[7] == Pair.Kind.GOLD and r[2] != Judgement.Choice.BOTH_BAD]
        gold_correct = sum(1 for choice, expected in gold if choice == expected)
        sided = [r for r in my_rows if r[2] in ("a", "b")]
        left = sum(1 for r in sided if (r[2] == "a") == r[3])
        bias = ag.position_bias(left, len(sided))
        median_ms, too_fast = ag.speed([r[4] for r in my_rows], taste.speed_floor_ms)
        screen = [("left" if (r[2] == "a") == r[3] else "right") if r[2] in ("a", "b") else r[2] for r in my_rows]
        judged, skipped = len(my_rows), skips.get(a, 0)
        interval = ag.wilson_interval(gold_correct, len(gold))
        # Trust reads agreement within the camp when the annotator has camp-mates, else with everybody.
        agreeing_i, compared_i = (
            (int(camp_agreeing[i]), int(camp_compared[i])) if camp_compared[i] else (int(agreeing[i]), int(compared[i]))
        )
        table.append({
            "annotator_id": a,
            "username": names.get(a, str(a)),
            "member": a in member_ids,
            "judged": judged,
            "skipped": skipped,
            "skip_rate": skipped / (judged + skipped) if judged + skipped else None,
            "agreement": float(agreeing[i] / compared[i]) if compared[i] else None,
            "agreement_compared": int(compared[i]),
            "camp_agreement": float(camp_agreeing[i] / camp_compared[i]) if camp_compared[i] else None,
            "camp_compared": int(camp_compared[i]),
            "gold_answered": len(gold),
            "gold_correct": gold_correct,
            "gold_accuracy": gold_correct / len(gold) if gold else None,
            "gold_interval": list(interval) if interval else None,
            "left_share": bias.share_left,
            "left_p_value": bias.p_value,
            "median_ms": median_ms,
            "too_fast_share": too_fast,
            "flag_rate": sum(1 for r in my_rows if r[5] or r[6]) / judged if judged else None,
            "longest_streak": ag.longest_streak(screen),
            "trust": ag.trust_score(gold_correct, len(gold), agreeing_i, compared_i),
            "camp": found.labels[i] if n_ann else None,
            "sparkline": _sparkline(same_others[mine], all_others[mine]),
        })
    _flag(table)
    by_round = defaultdict(list)
    for k, row in enumerate(rows):
        by_round[row[9]].append(k)
    return {
        "taste": taste.slug,
        "round": round_id,
        "judgements": len(rows),
        "annotators": table,
        "alpha": ag.alpha(matrix),
        "alpha_by_round": {
            str(rid): ag.alpha(ag.reliability_matrix(r_idx[ks], u_idx[ks], codes[ks], n_ann, n_units))
            for rid, ks in sorted(by_round.items())
        },
        "matrix": {
            "usernames": [names.get(a, str(a)) for a in annotator_ids],
            "agreement": [[None if np.isnan(x) else round(float(x), 4) for x in line] for line in share],
            "shared": shared.tolist(),
        },
        "camps": _camps_evidence(found, matrix, annotator_ids, names),
    }


def _sparkline(same: np.ndarray, others: np.ndarray) -> list[float | None]:
    """Agreement with the other annotators over the annotator's answers in time order, in SPARK_BUCKETS slices."""
    if len(same) == 0:
        return []
    points = []
    for chunk_same, chunk_all in zip(np.array_split(same, min(SPARK_BUCKETS, len(same))),
                                     np.array_split(others, min(SPARK_BUCKETS, len(same))), strict=True):
        total = chunk_all.sum()
        points.append(round(float(chunk_same.sum() / total), 3) if total else None)
    return points


# A figure past these marks puts a reason on the annotator's row.
FLAG_GOLD_BELOW = 0.85  # gold accuracy's upper Wilson bound below this: it cannot be 85%
FLAG_AGREEMENT_BELOW = 0.6  # agreement within the camp (with everybody when alone), over at least 20 answers
FLAG_LEFT_P = 0.001
FLAG_TOO_FAST = 0.5


def _flag(table: list[dict]) -> None:
    for row in table:
        reasons = []
        if row["gold_interval"] and row["gold_interval"][1] < FLAG_GOLD_BELOW:
            reasons.append("gold accuracy")
        own, compared = (
            (row["camp_agreement"], row["camp_compared"]) if row["camp_compared"] else (row["agreement"], row["agreement_compared"])
        )
        if own is not None and compared >= 20 and own < FLAG_AGREEMENT_BELOW:
            reasons.append("agreement")
        if row["left_p_value"] is not None and row["left_p_value"] < FLAG_LEFT_P:
            reasons.append("position bias")
        if row["too_fast_share"] is not None and row["too_fast_share"] > FLAG_TOO_FAST:
            reasons.append("speed")
        row["flags"] = reasons


def _camps_evidence(found: ag.Camps, matrix: np.ndarray, annotator_ids: list[int], names: dict) -> dict:
    """The camps with their members and α within each, and whether the taste holds two or more."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(found.labels):
        members[label].append(i)
    camps = [
        {
            "camp": label,
            "usernames": [names.get(annotator_ids[i], str(annotator_ids[i])) for i in idx],
            "annotator_ids": [annotator_ids[i] for i in idx],
            "alpha": ag.alpha(matrix[idx]),
        }
        for label, idx in sorted(members.items())
        if len(idx) >= ag.MIN_CAMP
    ]
    return {
        "split": found.camps >= 2,
        "rule": f"average-linkage clusters on 1 - agreement, cut where groups agree on under "
        f"{ag.CAMP_AGREEMENT:.0%} of shared pairs; camps have at least {ag.MIN_CAMP} annotators",
        "within_agreement": found.within,
        "across_agreement": found.across,
        "alpha": ag.alpha(matrix),
        "camps": camps,
    }


def annotator_recent_pairs(*, taste: Taste, annotator_id: int, limit: int = 50) -> list[dict]:
    """The annotator's latest judgements in `taste` with the pair, their answer, the other annotators' answers and
    the others' majority (the commonest answer; none when the others split evenly or gave none)."""
    mine = list(
        Judgement.objects.filter(pair__taste=taste, annotator_id=annotator_id)
        .select_related("pair__prompt", "pair__image_a", "pair__image_b", "pair__round")
        .order_by("-created_at", "-id")[:limit]
    )
    others = defaultdict(list)
    for pair_id, choice in (
        Judgement.objects.filter(pair_id__in=[j.pair_id for j in mine]).exclude(annotator_id=annotator_id)
        .values_list("pair_id", "choice")
    ):
        others[pair_id].append(choice)
    rows = []
    for judgement in mine:
        theirs = others[judgement.pair_id]
        counts = sorted(((theirs.count(c), c) for c in set(theirs)), reverse=True)
        majority = counts[0][1] if counts and (len(counts) == 1 or counts[0][0] > counts[1][0]) else None
        rows.append({
            "judgement": judgement, "pair": judgement.pair, "answer": judgement.choice, "others": sorted(theirs),
            "majority": majority, "agrees": None if majority is None else majority == judgement.choice,
            "gold": judgement.pair.gold_choice or None,
        })
    return rows
