"""Claims and submissions from many connections at once on PostgreSQL: no pair over-assigned, ever."""

import random
import threading
import uuid

import pytest
from django.db import connection, connections
from django.db.models import Count

from annotate import services
from annotate.models import Assignment, Judgement, Pair
from tests.conftest import make_annotator, make_round

THREADS, PAIRS, OVERLAP = 20, 500, 2


def live_over_assignment() -> list[tuple[int, int]]:
    """Pairs holding more live leases plus judgements than their overlap, counted from the rows themselves."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            """
            SELECT a.pair_id, count(*) FROM annotate_assignment a JOIN annotate_pair p ON p.id = a.pair_id
            WHERE a.state IN ('leased', 'judged') GROUP BY a.pair_id, p.overlap HAVING count(*) > p.overlap
            """
        )
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
def test_twenty_annotators_finish_500_pairs_with_overlap_2_exactly():
    assert connection.vendor == "postgresql", "this test needs the real row locks of PostgreSQL"
    taste = services.taste_create(slug="concurrency")
    make_round(taste, pairs=PAIRS, overlap=OVERLAP)
    annotators = [make_annotator(taste) for _ in range(THREADS)]
    errors: list[BaseException] = []
    violations: list = []
    done = threading.Event()

    def annotate(annotator, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while True:
                batch = services.assignment_claim(annotator=annotator, taste=taste, count=rng.randint(1, 3))
                if not batch:
                    return
                for assignment in batch:
                    services.judgement_submit(
                        annotator=annotator, assignment_id=assignment.pk, client_uuid=uuid.uuid4(),
                        choice=rng.choice(services.SCREEN_CHOICES), duration_ms=rng.randint(200, 5000),
                    )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    def watch() -> None:
        try:
            while not done.is_set():
                violations.extend(live_over_assignment())
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    workers = [threading.Thread(target=annotate, args=(a, i)) for i, a in enumerate(annotators)]
    watcher.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    done.set()
    watcher.join()

    assert not errors, errors[:3]
    assert violations == []
    per_pair = Judgement.objects.values("pair").annotate(n=Count("id"))
    assert sorted({row["n"] for row in per_pair}) == [OVERLAP]
    assert per_pair.count() == PAIRS
    assert Judgement.objects.count() == PAIRS * OVERLAP
    duplicates = (
        Judgement.objects.values("pair", "annotator").annotate(n=Count("id")).filter(n__gt=1)
    )
    assert duplicates.count() == 0
    assert set(Pair.objects.values_list("assigned_count", "judged_count")) == {(OVERLAP, OVERLAP)}
    assert not Assignment.objects.exclude(state=Assignment.State.JUDGED).exists()
