"""The round state machine: compare-and-set transitions, failure with a reason, retry, cancel (annotate/rounds.py)."""

import threading

import pytest
from django.db import connection

from annotate import rounds, services
from annotate.errors import DomainError
from annotate.models import Round


@pytest.fixture
def round_(taste) -> Round:
    return Round.objects.create(taste=taste, number=1)


def state(round_id: int) -> str:
    return Round.objects.get(pk=round_id).state


@pytest.mark.django_db
def test_states_advance_in_order(round_):
    seen = [round_.state]
    while state(round_.pk) != Round.State.DONE:
        assert rounds.round_advance(round_id=round_.pk, from_state=state(round_.pk))
        seen.append(state(round_.pk))
    assert seen == ["draft", "sampling", "annotating", "training", "evaluating", "done"]
    with pytest.raises(DomainError, match="no next step"):
        rounds.round_advance(round_id=round_.pk, from_state="done")


@pytest.mark.django_db
def test_a_stale_transition_changes_nothing(round_):
    assert rounds.round_advance(round_id=round_.pk, from_state="draft")
    assert not rounds.round_advance(round_id=round_.pk, from_state="draft")  # the double click
    assert state(round_.pk) == "sampling"


@pytest.mark.django_db
def test_failure_keeps_the_reason_and_retry_resumes_the_step(round_):
    rounds.round_advance(round_id=round_.pk, from_state="draft")
    rounds.round_advance(round_id=round_.pk, from_state="sampling")
    rounds.round_advance(round_id=round_.pk, from_state="annotating")
    assert rounds.round_fail(round_id=round_.pk, from_state="training", reason="CUDA out of memory")
    failed = Round.objects.get(pk=round_.pk)
    assert (failed.state, failed.error, failed.failed_in) == ("failed", "CUDA out of memory", "training")
    assert rounds.round_retry(round_id=round_.pk)
    retried = Round.objects.get(pk=round_.pk)
    assert (retried.state, retried.error, retried.failed_in) == ("training", "", "")
    assert not rounds.round_retry(round_id=round_.pk)


@pytest.mark.django_db
def test_cancel_stops_any_unfinished_round(round_):
    assert rounds.round_cancel(round_id=round_.pk, reason="wrong prompts")
    assert (state(round_.pk), Round.objects.get(pk=round_.pk).error) == ("cancelled", "wrong prompts")
    assert not rounds.round_cancel(round_id=round_.pk)
    assert not rounds.round_advance(round_id=round_.pk, from_state="draft")


@pytest.mark.django_db(transaction=True)
def test_two_workers_advancing_at_once_move_the_round_once():
    assert connection.vendor == "postgresql"
    taste = services.taste_create(slug="race")
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING)
    results, barrier = [], threading.Barrier(8)

    def advance() -> None:
        try:
            barrier.wait()
            results.append(rounds.round_advance(round_id=round_.pk, from_state="annotating"))
        finally:
            connection.close()

    threads = [threading.Thread(target=advance) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert state(round_.pk) == "training"
