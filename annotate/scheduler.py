"""Which pairs an annotator gets next: a short pipeline of named strategies, tried in order.

    claim(n) ─► gold ─► finish_overlap ─► fresh ─► (active selection: later strategies slot in here)
                 known     pairs others       untouched
                 answers   started first      pairs

Each strategy returns up to `n` pair ids, locked (FOR UPDATE SKIP LOCKED) in the caller's
transaction; the pipeline stops once it has `n`. Gold pairs are then put at random places in the
batch, so their position says nothing. See docs/architecture.md.
"""

import random
from collections.abc import Callable
from typing import NamedTuple

from annotate import locks
from annotate.models import Assignment, Pair


class ClaimRequest(NamedTuple):
    taste_id: int
    annotator_id: int
    gold_share: float = 0.0  # the taste's Taste.gold_share


Strategy = Callable[[ClaimRequest, int], list[int]]


def gold_due(request: ClaimRequest, limit: int) -> int:
    """How many of the next `limit` pairs should be gold so that, over the annotator's pairs in the taste, the
    share of gold tracks `gold_share`: the shortfall s·(held + limit) − gold held, rounded up or down at random
    by its fraction (so no fixed rhythm gives gold away), within [0, limit]."""
    if request.gold_share <= 0:
        return 0
    held = Assignment.objects.filter(pair__taste_id=request.taste_id, annotator_id=request.annotator_id).exclude(
        state=Assignment.State.EXPIRED
    )
    total = held.count()
    gold = held.filter(pair__kind=Pair.Kind.GOLD).count()
    shortfall = request.gold_share * (total + limit) - gold
    return max(0, min(limit, int(shortfall + random.random())))


def gold(request: ClaimRequest, limit: int) -> list[int]:
    """Gold pairs (a lead's known answers), as many as the taste's gold share makes due."""
    due = gold_due(request, limit)
    return locks.lock_gold_pairs(taste_id=request.taste_id, annotator_id=request.annotator_id, limit=due) if due else []


def finish_overlap(request: ClaimRequest, limit: int) -> list[int]:
    """Pairs that other annotators already hold or judged: finishing them yields usable labels soonest."""
    return locks.lock_open_pairs(taste_id=request.taste_id, annotator_id=request.annotator_id, started=True, limit=limit)


def fresh(request: ClaimRequest, limit: int) -> list[int]:
    """Untouched pairs, oldest first."""
    return locks.lock_open_pairs(taste_id=request.taste_id, annotator_id=request.annotator_id, started=False, limit=limit)


PIPELINE: tuple[Strategy, ...] = (gold, finish_overlap, fresh)


def choose_pairs(request: ClaimRequest, limit: int, pipeline: tuple[Strategy, ...] = PIPELINE) -> list[int]:
    """Run the strategies in order until `limit` pairs are locked; returns their ids, possibly fewer."""
    chosen: list[int] = []
    golden: list[int] = []
    for strategy in pipeline:
        if len(chosen) + len(golden) >= limit:
            break
        found = [i for i in strategy(request, limit - len(chosen) - len(golden)) if i not in chosen and i not in golden]
        (golden if strategy is gold else chosen).extend(found)
    for pair_id in golden:
        chosen.insert(random.randint(0, len(chosen)), pair_id)
    return chosen
