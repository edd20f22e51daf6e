"""Which pairs an annotator gets next: a short pipeline of named strategies, tried in order.

    claim(n) ─► finish_overlap ─► fresh ─► (gold, active selection: later strategies slot in here)
                 pairs others         untouched
                 started first        pairs

Each strategy locks up to what the earlier ones left of `n` pair ids (FOR UPDATE SKIP LOCKED) in the caller's
transaction. On PostgreSQL the pipeline is SQL, one CTE per strategy inside the claim's single statement
(`chosen_pairs_sql`); elsewhere (SQLite) it runs as ORM queries (`choose_pairs`). See docs/architecture.md.
"""

from typing import NamedTuple

from annotate import locks


class ClaimRequest(NamedTuple):
    taste_id: int
    annotator_id: int


class Strategy(NamedTuple):
    name: str
    started: bool  # the pairs it takes: started by others (True) or untouched (False)


# finish_overlap: pairs that other annotators already hold or judged; finishing them yields usable labels
# soonest. fresh: untouched pairs, oldest first.
PIPELINE: tuple[Strategy, ...] = (Strategy("finish_overlap", started=True), Strategy("fresh", started=False))


def choose_pairs(request: ClaimRequest, limit: int, pipeline: tuple[Strategy, ...] = PIPELINE) -> list[int]:
    """Run the strategies in order until `limit` pairs are locked; returns their ids, possibly fewer."""
    chosen: list[int] = []
    for strategy in pipeline:
        if len(chosen) >= limit:
            break
        pairs = locks.lock_open_pairs(
            taste_id=request.taste_id, annotator_id=request.annotator_id, started=strategy.started
        )
        chosen += [pair_id for pair_id in pairs.values_list("id", flat=True)[: limit - len(chosen)] if pair_id not in chosen]
    return chosen


def chosen_pairs_sql(pipeline: tuple[Strategy, ...] = PIPELINE) -> str:
    """choose_pairs as PostgreSQL CTEs: one per strategy, each limited to what the earlier ones left of
    %(limit)s (a strategy is not run once the pipeline is full), then `chosen(pair_id, step)`.

    Parameters: those of locks.open_pairs_sql, and %(limit)s.
    """
    ctes, taken = [], ["0"]
    for strategy in pipeline:
        limit = f"GREATEST(%(limit)s - ({' + '.join(taken)}), 0)"
        ctes.append(f"{strategy.name} AS ({locks.open_pairs_sql(started=strategy.started, limit=limit)})")
        taken.append(f"(SELECT count(*) FROM {strategy.name})")
    chosen = " UNION ALL ".join(f"SELECT id, {step} FROM {s.name}" for step, s in enumerate(pipeline))
    return ",\n".join([*ctes, f"chosen (pair_id, step) AS ({chosen})"])
