"""Which pairs an annotator gets next: a short pipeline of named strategies, tried in order.

    claim(n) ─► finish_overlap ─► fresh ─► (gold, active selection: later strategies slot in here)
                 pairs others         untouched
                 started first        pairs

Each strategy returns up to `n` pair ids, locked (FOR UPDATE SKIP LOCKED) in the caller's
transaction; the pipeline stops once it has `n`. See docs/architecture.md.
"""

from collections.abc import Callable
from typing import NamedTuple

from annotate import locks


class ClaimRequest(NamedTuple):
    taste_id: int
    annotator_id: int


Strategy = Callable[[ClaimRequest, int], list[int]]


def finish_overlap(request: ClaimRequest, limit: int) -> list[int]:
    """Pairs that other annotators already hold or judged: finishing them yields usable labels soonest."""
    return locks.lock_open_pairs(taste_id=request.taste_id, annotator_id=request.annotator_id, started=True, limit=limit)


def fresh(request: ClaimRequest, limit: int) -> list[int]:
    """Untouched pairs, oldest first."""
    return locks.lock_open_pairs(taste_id=request.taste_id, annotator_id=request.annotator_id, started=False, limit=limit)


PIPELINE: tuple[Strategy, ...] = (finish_overlap, fresh)


def choose_pairs(request: ClaimRequest, limit: int, pipeline: tuple[Strategy, ...] = PIPELINE) -> list[int]:
    """Run the strategies in order until `limit` pairs are locked; returns their ids, possibly fewer."""
    chosen: list[int] = []
    for strategy in pipeline:
        if len(chosen) >= limit:
            break
        chosen += [pair_id for pair_id in strategy(request, limit - len(chosen)) if pair_id not in chosen]
    return chosen
