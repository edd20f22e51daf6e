"""Shared fixtures: a taste with annotators, rounds full of pairs, and API clients."""

import contextlib
import io
import itertools
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.utils import timezone
from PIL import Image as PILImage
from rest_framework.test import APIClient

from annotate import services
from annotate.images import image_store
from annotate.models import Image, Pair, Prompt, Round, Taste

# Playwright's sync API runs an event loop in the test thread; the ORM calls of the tests are still sync.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

_names = itertools.count()
REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def png_bytes(colour: tuple[int, int, int] = (128, 64, 32), size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CHISEL_EXPORT_ROOT = tmp_path / "exports"
    settings.CHISEL_CHECKPOINT_ROOT = tmp_path / "checkpoints"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    """Throttle counters start at zero in every test: the cache (Redis) outlives the test database's ids."""
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}


@pytest.fixture
def taste(db) -> Taste:
    return services.taste_create(slug="portraits", name="Portraits")


def make_annotator(taste: Taste | None, name: str | None = None):
    user, token = services.annotator_create(
        username=name or f"annotator-{next(_names)}", tastes=[taste] if taste else [], password="pw-annotator-1"
    )
    user.token = token
    return user


def make_lead(name: str | None = None):
    user, token = services.lead_create(username=name or f"lead-{next(_names)}", password="pw-lead-1")
    user.token = token
    return user


@pytest.fixture
def annotator(taste):
    return make_annotator(taste)


@pytest.fixture
def other_annotator(taste):
    return make_annotator(taste)


@pytest.fixture
def lead(db):
    return make_lead()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, driven by Playwright; one per session (two sync Playwrights cannot run at once)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def lead_browser(lead):
    """A browser session logged in as a lead (admin pages)."""
    from django.test import Client

    browser = Client()
    browser.force_login(lead)
    return browser


def make_round(taste: Taste, *, pairs: int, overlap: int = 2, state: str = Round.State.ANNOTATING,
               colours: tuple[tuple[int, int, int], tuple[int, int, int]] = ((200, 10, 10), (10, 10, 200))) -> Round:
    """A round with `pairs` pairs; the images are distinct rows sharing two stored files (of `colours`), for speed."""
    number = Round.objects.filter(taste=taste).count() + 1
    round_ = Round.objects.create(taste=taste, number=number, state=state, overlap=overlap, pair_quota=pairs)
    prompt = Prompt.objects.create(text=f"a test prompt {number}")
    first = image_store(prompt=prompt, data=png_bytes(colours[0]), seed=1)
    second = image_store(prompt=prompt, data=png_bytes(colours[1]), seed=2)
    images = Image.objects.bulk_create(
        Image(prompt=prompt, seed=i, file=source.file.name, sha256=source.sha256, width=8, height=8)
        for i, source in zip(range(2 * pairs), itertools.cycle([first, second]))
    )
    Pair.objects.bulk_create(
        Pair(round=round_, taste=taste, prompt=prompt, image_a=images[2 * i], image_b=images[2 * i + 1], overlap=overlap)
        for i in range(pairs)
    )
    return round_


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.token}")
    return client


def later(**kwargs):
    return timezone.now() + timezone.timedelta(**kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, *, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path, media_root):
    """A real Celery worker (solo pool) on the Redis broker, using the test database; stopped after the test."""
    with celery_worker(tmp_path / "worker.log", {
        "MEDIA_ROOT": str(media_root),
        "CHISEL_EXPORT_ROOT": str(media_root.parent / "exports"),
        "CHISEL_CHECKPOINT_ROOT": str(media_root.parent / "checkpoints"),
    }) as worker:
        yield worker


@contextlib.contextmanager
def celery_worker(log_path: Path, env: dict[str, str], cwd: Path = REPO):
    """A Celery worker subprocess on the test database and broker, with `env` added to this process's environment
    and `cwd` as its working directory; stopped (its log's tail printed) on leaving."""
    from django.db import connection

    from chisel.celery import app

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **env,
    }
    app.control.purge()
    log = log_path.open("w+")
    worker = subprocess.Popen(
        [str(VENV_BIN / "celery"), "-A", "chisel", "worker", "--pool", "solo", "--loglevel", "INFO", "-Q", "celery,sample,train",
         "--hostname", f"test-{os.getpid()}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: app.control.ping(timeout=0.5), timeout=60, what="the Celery worker to answer")
        yield worker
    finally:
        stop(worker)
        log.seek(0)
        print(log.read()[-4000:])


# The S3 server of the tests: SeaweedFS, started by .ci/services.sh (make test, make services).
S3_ENDPOINT = os.environ.get("CHISEL_TEST_S3_ENDPOINT", f"http://127.0.0.1:{os.environ.get('CHISEL_TEST_S3_PORT', '8333')}")
S3_ACCESS_KEY = os.environ.get("CHISEL_TEST_S3_ACCESS_KEY", "chisel-test")
S3_SECRET_KEY = os.environ.get("CHISEL_TEST_S3_SECRET_KEY", "chisel-test-secret")


def s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=S3_ENDPOINT, aws_access_key_id=S3_ACCESS_KEY,
                        aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1")


@pytest.fixture(scope="session")
def s3_bucket() -> str:
    """A new, empty bucket on the test S3 server for this test session; emptied and deleted afterwards."""
    from botocore.exceptions import BotoCoreError, ClientError

    client, name = s3_client(), f"chisel-test-{uuid.uuid4().hex[:16]}"
    for attempt in range(20):  # a server that has just started may refuse the first requests (InternalError)
        try:
            client.create_bucket(Bucket=name)
            break
        except (BotoCoreError, ClientError) as exc:
            if attempt == 19:
                pytest.fail(f"No S3 server answers at {S3_ENDPOINT} ({exc}); start it with `make services` "
                            f"(.ci/services.sh).")
            time.sleep(1)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def s3_storage(settings, s3_bucket) -> dict[str, str]:
    """CHISEL_STORAGE=s3 in this test, on the session's bucket under a prefix of the test's own. Returns the same
    settings as environment variables, for the processes a test starts."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    env = {"CHISEL_STORAGE": "s3", "CHISEL_S3_BUCKET": s3_bucket, "CHISEL_S3_ENDPOINT_URL": S3_ENDPOINT,
           "CHISEL_S3_ACCESS_KEY_ID": S3_ACCESS_KEY, "CHISEL_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
           "CHISEL_S3_REGION": "us-east-1", "CHISEL_S3_PREFIX": prefix}
    settings.CHISEL_STORAGE, settings.CHISEL_S3_PREFIX = "s3", prefix
    settings.CHISEL_S3 = {**settings.CHISEL_S3, "bucket_name": s3_bucket, "endpoint_url": S3_ENDPOINT,
                          "access_key": S3_ACCESS_KEY, "secret_key": S3_SECRET_KEY, "region_name": "us-east-1"}
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "annotate.s3.AppServedS3Storage", "OPTIONS": {**settings.CHISEL_S3, "location": f"{prefix}/media"}}}
    return env


def s3_keys(bucket: str, prefix: str) -> list[str]:
    """Every key under `prefix` in the test bucket."""
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
