"""The assignment state machine under random sequences of claim, submit, amend, skip, expire, reap and replay.

Hypothesis drives the services (`annotate/services.py`) on PostgreSQL with a clock of its own and, after every
step, checks the invariants against the rows: a pair's `assigned_count` is its live leases plus judgements, its
`judged_count` its judgements, no pair is over its overlap, no annotator judges a pair twice, and replaying a
submission (same `client_uuid`) answers the first judgement and writes nothing.
"""

import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from annotate import services
from annotate.errors import DomainError, DuplicateClientUuid, Forbidden, LeaseExpired
from annotate.models import Assignment, Judgement, Pair, Taste
from tests.conftest import make_annotator, make_round

ANNOTATORS, PAIRS, OVERLAP = 3, 4, 2

_PAIR_COUNTS = """
    SELECT p.id, p.overlap, p.assigned_count, p.judged_count,
        (SELECT count(*) FROM annotate_assignment a WHERE a.pair_id = p.id AND a.state IN ('leased', 'judged')),
        (SELECT count(*) FROM annotate_judgement j WHERE j.pair_id = p.id)
    FROM annotate_pair p WHERE p.taste_id = %s ORDER BY p.id
"""


class AssignmentMachine(RuleBasedStateMachine):
    """A taste with a few pairs and annotators; the model is what the services told us, the truth the rows."""

    annotators: list = []  # made once per test (password hashing is slow); each example joins them to a new taste

    def __init__(self):
        super().__init__()
        self.savepoint = transaction.savepoint()
        self.now = timezone.now()
        self.leases: dict[int, dict] = {}  # assignment id → {annotator, pair, state, expires}, as the model sees it
        self.submitted: dict[uuid.UUID, dict] = {}  # client_uuid → {annotator, assignment, choice, judgement}

    def teardown(self):
        transaction.savepoint_rollback(self.savepoint)

    @initialize()
    def world(self):
        taste = Taste.objects.create(slug=f"machine-{uuid.uuid4().hex[:12]}", name="machine")
        make_round(taste, pairs=PAIRS, overlap=OVERLAP)
        for annotator in self.annotators:
            services.annotator_join(annotator=annotator, taste=taste)
        self.taste = taste

    # --- rules ------------------------------------------------------------------------------------

    @rule(who=st.integers(0, ANNOTATORS - 1), count=st.integers(1, 3))
    def claim(self, who, count):
        annotator = self.annotators[who]
        held = [i for i, a in sorted(self.leases.items(), key=lambda kv: (kv[1]["claimed"], kv[0]))
                if a["annotator"] == who and a["state"] == "leased" and a["expires"] > self.now]  # fmt: skip
        got = services.assignment_claim(annotator=annotator, taste=self.taste, count=count, now=self.now)
        ids = [a.pk for a in got]
        assert ids[: min(count, len(held))] == held[:count], "held leases come first, oldest first, and are kept"
        assert len(ids) == len(set(ids)) <= count
        for assignment in got:
            assert assignment.annotator_id == annotator.pk and assignment.state == Assignment.State.LEASED
            assert assignment.lease_expires_at > self.now
            known = self.leases.get(assignment.pk)
            if assignment.pk not in held:
                # A new claim: never a pair this annotator judged, skipped or holds; an expired lease may come back.
                mine = [a for a in self.leases.values() if a["annotator"] == who and a["pair"] == assignment.pair_id]
                assert all(a["state"] == "expired" for a in mine), mine
                assert known is None or known["state"] == "expired"
            self.leases[assignment.pk] = {
                "annotator": who, "pair": assignment.pair_id, "state": "leased",
                "expires": assignment.lease_expires_at, "claimed": assignment.claimed_at,
            }  # fmt: skip
        if len(ids) < count:
            # Nothing more was handed out: then no pair was open to this annotator.
            open_to_them = Pair.objects.filter(taste=self.taste, assigned_count__lt=OVERLAP).exclude(
                assignments__in=Assignment.objects.filter(annotator=annotator).exclude(state=Assignment.State.EXPIRED)
            )
            assert not open_to_them.exists(), "a pair was open to the annotator but not handed out"

    @precondition(lambda self: self.leases)
    @rule(who=st.integers(0, ANNOTATORS - 1), pick=st.integers(0, 10**6), choice=st.sampled_from(services.SCREEN_CHOICES))
    def submit(self, who, pick, choice):
        assignment_id = sorted(self.leases)[pick % len(self.leases)]
        lease = self.leases[assignment_id]
        client_uuid = uuid.uuid4()
        live = lease["annotator"] == who and lease["state"] == "leased" and lease["expires"] > self.now
        try:
            judgement, created = services.judgement_submit(
                annotator=self.annotators[who], assignment_id=assignment_id, choice=choice, client_uuid=client_uuid,
                duration_ms=1000, now=self.now,
            )  # fmt: skip
        except DomainError as refused:
            assert not live, f"a live lease was refused: {refused}"
            if lease["annotator"] != who:
                assert isinstance(refused, Forbidden)
            elif lease["state"] == "leased":
                assert isinstance(refused, LeaseExpired)
            return
        assert live and created
        lease["state"] = "judged"
        self.submitted[client_uuid] = {"annotator": who, "assignment": assignment_id, "choice": choice,
                                       "judgement": judgement.pk}  # fmt: skip

    @precondition(lambda self: self.submitted)
    @rule(pick=st.integers(0, 10**6), other_annotator=st.booleans())
    def replay(self, pick, other_annotator):
        client_uuid = sorted(self.submitted)[pick % len(self.submitted)]
        sent = self.submitted[client_uuid]
        who = (sent["annotator"] + 1) % ANNOTATORS if other_annotator else sent["annotator"]
        rows_before = Judgement.objects.filter(pair__taste=self.taste).count()
        try:
            judgement, created = services.judgement_submit(
                annotator=self.annotators[who], assignment_id=sent["assignment"], choice=sent["choice"],
                client_uuid=client_uuid, duration_ms=1000, now=self.now,
            )  # fmt: skip
        except DuplicateClientUuid:
            assert other_annotator, "the annotator's own replay was refused"
        else:
            assert not other_annotator, "another annotator reused a client_uuid"
            assert (judgement.pk, created) == (sent["judgement"], False)
        assert Judgement.objects.filter(pair__taste=self.taste).count() == rows_before

    @precondition(lambda self: self.submitted)
    @rule(pick=st.integers(0, 10**6), choice=st.sampled_from(services.SCREEN_CHOICES))
    def amend(self, pick, choice):
        sent = self.submitted[sorted(self.submitted)[pick % len(self.submitted)]]
        lease = self.leases[sent["assignment"]]
        try:
            judgement = services.judgement_amend(
                annotator=self.annotators[sent["annotator"]], assignment_id=sent["assignment"], choice=choice,
                duration_ms=1500, now=self.now,
            )  # fmt: skip
        except LeaseExpired:
            assert lease["expires"] <= self.now, "an amendment within the lease was refused"
            return
        assert lease["expires"] > self.now, "an amendment after the lease was accepted"
        assert judgement.pk == sent["judgement"]
        sent["choice"] = choice  # a replay of the first submission still answers this judgement

    @precondition(lambda self: self.leases)
    @rule(who=st.integers(0, ANNOTATORS - 1), pick=st.integers(0, 10**6))
    def skip(self, who, pick):
        assignment_id = sorted(self.leases)[pick % len(self.leases)]
        lease = self.leases[assignment_id]
        try:
            services.assignment_skip(annotator=self.annotators[who], assignment_id=assignment_id, now=self.now)
        except Forbidden:
            assert lease["annotator"] != who
            return
        except DomainError:
            assert lease["annotator"] == who and lease["state"] in ("judged", "expired")
            return
        assert lease["annotator"] == who and lease["state"] in ("leased", "skipped")
        lease["state"] = "skipped"

    @rule(seconds=st.sampled_from([1, 60, django_settings.CHISEL_LEASE.total_seconds() + 1]))
    def move_clock(self, seconds):
        self.now += timedelta(seconds=seconds)

    @precondition(lambda self: any(a["state"] == "leased" for a in self.leases.values()))
    @rule(pick=st.integers(0, 10**6))
    def expire_one(self, pick):
        """One lease runs out now (its expiry set in the past), the others keep running."""
        leased = sorted(i for i, a in self.leases.items() if a["state"] == "leased")
        assignment_id = leased[pick % len(leased)]
        self.now += timedelta(seconds=1)
        Assignment.objects.filter(pk=assignment_id).update(lease_expires_at=self.now)
        self.leases[assignment_id]["expires"] = self.now

    @rule()
    def reap(self):
        due = [i for i, a in self.leases.items() if a["state"] == "leased" and a["expires"] <= self.now]
        assert services.leases_reap_expired(now=self.now) == len(due)
        for assignment_id in due:
            self.leases[assignment_id]["state"] = "expired"

    # --- invariants -------------------------------------------------------------------------------

    @invariant()
    def counters_match_rows(self):
        if not hasattr(self, "taste"):
            return
        with connection.cursor() as cursor:
            cursor.execute(_PAIR_COUNTS, [self.taste.pk])
            for pair_id, overlap, assigned, judged, live_or_judged, judgements in cursor.fetchall():
                assert assigned == live_or_judged, f"pair {pair_id}: assigned_count {assigned} ≠ {live_or_judged} rows"
                assert judged == judgements, f"pair {pair_id}: judged_count {judged} ≠ {judgements} judgements"
                assert judged <= assigned <= overlap, f"pair {pair_id} over its overlap"

    @invariant()
    def rows_match_the_model(self):
        if not hasattr(self, "taste"):
            return
        rows = Assignment.objects.filter(pair__taste=self.taste)
        assert {a.pk: a.state for a in rows} == {i: a["state"] for i, a in self.leases.items()}
        judgements = Judgement.objects.filter(pair__taste=self.taste).select_related("assignment")
        assert {j.client_uuid: j.pk for j in judgements} == {u: s["judgement"] for u, s in self.submitted.items()}
        pairs_judged = [(j.pair_id, j.annotator_id) for j in judgements]
        assert len(pairs_judged) == len(set(pairs_judged)), "an annotator judged a pair twice"
        for j in judgements:
            assert (j.assignment.pair_id, j.assignment.annotator_id, j.assignment.state) == (j.pair_id, j.annotator_id, "judged")


@pytest.mark.django_db
def test_assignment_state_machine_keeps_its_invariants():
    assert connection.vendor == "postgresql", "the hot path under test is PostgreSQL's"
    AssignmentMachine.annotators = [make_annotator(None) for _ in range(ANNOTATORS)]
    run_state_machine_as_test(
        AssignmentMachine,
        settings=settings(
            max_examples=30, stateful_step_count=20, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),  # fmt: skip
    )
