"""The training job's heartbeat: it outlives database outages, logs them in a line, and a lost or dead one is noticed."""

import ctypes
import logging
import sys
import threading
import time
import uuid

import pytest
from celery.utils.log import LoggingProxy
from django.db import connection
from django.utils import timezone

from annotate import training
from annotate.models import Round, TrainingJob
from chisel.celery import log_thread_crash
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job(taste):
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.TRAINING)
    return TrainingJob.objects.create(round=round_, steps=10)


@pytest.fixture
def worker_stderr(monkeypatch):
    """The worker's stderr as Celery redirects it: every write becomes a log record of `celery.redirected`."""
    monkeypatch.setattr(sys, "stderr", LoggingProxy(logging.getLogger("celery.redirected"), logging.WARNING))


def heartbeat_at(job_id: int):
    return TrainingJob.objects.values_list("heartbeat_at", flat=True).get(pk=job_id)


def database_refuses_connections(refuse: bool) -> None:
    """A real outage of the test database: no new connection is accepted and the open ones (the heartbeat's) are
    cut, except this test's own. Run from the server's maintenance database (a database cannot shut itself)."""
    import psycopg

    own = connection.settings_dict
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        test_pid = cursor.fetchone()[0]
    with psycopg.connect(host=own["HOST"], port=own["PORT"] or 5432, user=own["USER"], password=own["PASSWORD"],
                         dbname="postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{own["NAME"]}" WITH ALLOW_CONNECTIONS {"false" if refuse else "true"}')
        if refuse:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                          [own["NAME"], test_pid])


def test_a_heartbeat_outlives_a_database_outage_and_logs_it_in_one_line(job, worker_stderr, caplog):
    caplog.set_level(logging.INFO)
    attempt = training.training_job_claim(job_id=job.pk)
    heartbeat = training.Heartbeat(job.pk, attempt, every=0.05, max_delay=0.2)
    heartbeat.start()
    try:
        wait_until(lambda: heartbeat_at(job.pk) > job.created_at and heartbeat.failures == 0, timeout=10,
                   what="a first renewal")
        try:
            database_refuses_connections(True)
            wait_until(lambda: heartbeat.failures >= 5, timeout=20, what="five failed renewals in a row")
        finally:
            database_refuses_connections(False)
        back = timezone.now()
        wait_until(lambda: heartbeat_at(job.pk) > back, timeout=20, what="a renewal once the database is back")
        assert heartbeat.thread.is_alive() and heartbeat.failures == 0 and not heartbeat.lost
        renewed = TrainingJob.objects.get(pk=job.pk)
        assert renewed.lease_until > back and renewed.state == "running"
    finally:
        heartbeat.stop()
    assert not heartbeat.thread.is_alive()
    assert [r for r in caplog.records if r.name == "celery.redirected"] == []  # nothing spilled on stderr
    told = [r for r in caplog.records if r.name == "annotate.training"]
    assert [r.levelname for r in told] == ["WARNING", "INFO"], [r.getMessage() for r in told]
    assert "heartbeat failed (OperationalError" in told[0].getMessage() and "\n" not in told[0].getMessage()
    assert "renewed again after" in told[1].getMessage()


def test_a_heartbeat_that_lost_its_job_stops_the_training_loop(job, settings):
    first = training.training_job_claim(job_id=job.pk)
    heartbeat = training.Heartbeat(job.pk, first, every=0.05)
    heartbeat.start()
    try:
        heartbeat.check()  # held: training goes on
        later = timezone.now() + settings.CHISEL_TRAIN_LEASE + timezone.timedelta(seconds=1)
        assert training.training_job_claim(job_id=job.pk, now=later) == 2  # another worker took the job
        wait_until(lambda: heartbeat.lost, timeout=10, what="the heartbeat to notice")
        with pytest.raises(training.HeartbeatLost):
            heartbeat.check()
    finally:
        heartbeat.stop()
    assert TrainingJob.objects.get(pk=job.pk).attempt == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread this test kills
def test_a_dead_heartbeat_thread_is_noticed_and_restarted(job):
    attempt = training.training_job_claim(job_id=job.pk)
    heartbeat = training.Heartbeat(job.pk, attempt, every=0.05)
    heartbeat.start()
    try:
        killed = heartbeat.thread
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(killed.ident), ctypes.py_object(SystemExit))
        killed.join(timeout=10)
        assert not killed.is_alive()
        heartbeat.check()
        assert heartbeat.restarts == 1 and heartbeat.thread.is_alive()
        restarted = timezone.now()
        wait_until(lambda: heartbeat_at(job.pk) > restarted, timeout=10, what="a renewal by the new thread")
    finally:
        heartbeat.stop()


def test_a_crashed_thread_is_logged_as_one_record_not_one_per_character(worker_stderr, caplog, monkeypatch):
    monkeypatch.setattr(threading, "excepthook", log_thread_crash)

    def crash():
        table = {}
        return table["lease"] + table["until"]

    thread = threading.Thread(target=crash, name=f"crash-{uuid.uuid4().hex[:4]}")
    thread.start()
    thread.join()
    time.sleep(0.05)
    assert [r for r in caplog.records if r.name == "celery.redirected"] == []
    crashed = [r for r in caplog.records if r.name == "chisel.threads"]
    assert len(crashed) == 1 and crashed[0].exc_info[0] is KeyError
