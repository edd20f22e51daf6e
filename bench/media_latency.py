"""Latency of the annotator's hot path in process: `next`, both image files, and the judgement, on PostgreSQL.

Builds a throw-away database (its name must contain "bench"), seeds a taste with `--pairs` pairs whose
images are distinct files (plus a second taste, so the image check has rows to skip), then one annotator
loops next → left image → right image → judgement `--judgements` times through Django's test client
(no network: the figures are the server's own cost). Prints p50/p99 in milliseconds per call. Each image is also
fetched a second time with the access check (`annotate.access.access_image_file`) switched off, `image_unchecked`:
the check's own cost is the difference.

With CHISEL_STORAGE=s3 (and the CHISEL_S3_* settings, docs/deploy.md) the images are objects in the bucket, served
through the app as in production; the run then also times the alternative it does not use: signing two presigned
URLs (what `next` would add) and fetching an image straight from the object store with one (`image_direct`).

    .venv/bin/python bench/media_latency.py --judgements 300
    CHISEL_STORAGE=s3 CHISEL_S3_BUCKET=… CHISEL_S3_ENDPOINT_URL=… … bench/media_latency.py --pairs 300
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import database_recreate, django_env  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def seed(pairs: int):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from annotate import services
    from annotate.models import Image, Pair, Prompt, Round

    tastes = [services.taste_create(slug=slug, name=slug) for slug in ("bench", "bench-other")]
    user, token = services.annotator_create(username="bench-0", tastes=tastes[:1], password="bench-pw-0-long")
    prompt = Prompt.objects.create(text="a bench prompt")
    for taste in tastes:
        round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=1, pair_quota=pairs)
        images = []
        for i in range(2 * pairs):
            name = f"images/{taste.slug}/{i:06d}.png"
            default_storage.save(name, ContentFile(b"\x89PNG fake"))
            images.append(Image(prompt=prompt, seed=i, file=name, sha256=f"{i:064d}", width=8, height=8))
        images = Image.objects.bulk_create(images)
        Pair.objects.bulk_create(
            Pair(round=round_, taste=taste, prompt=prompt, image_a=images[2 * i], image_b=images[2 * i + 1], overlap=1)
            for i in range(pairs)
        )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--judgements", type=int, default=300)
    parser.add_argument("--database-url", default="postgres://postgres:postgres@127.0.0.1:5432/chisel_bench_media")
    args = parser.parse_args()

    database_recreate(args.database_url)
    files = tempfile.mkdtemp(prefix="chisel-media-bench-")
    # Throttle counters of this run only (user ids repeat from run to run).
    cache_url = f"redis://127.0.0.1:6379/1?key_prefix=bench-{uuid.uuid4().hex}"
    os.environ.update(django_env(args.database_url, files), ALLOWED_HOSTS="testserver", CACHE_URL=cache_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    token = seed(args.pairs)
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    timings: dict[str, list[float]] = {"next": [], "image": [], "image_unchecked": [], "judgement": []}
    from annotate import views

    checked = views.access_image_file
    presigned = None
    if os.environ.get("CHISEL_STORAGE") == "s3":
        from django.conf import settings
        from storages.backends.s3 import S3Storage

        presigned = S3Storage(**settings.STORAGES["default"]["OPTIONS"])  # the bucket's own, signed URLs
        timings.update(presign=[], image_direct=[])
    for _ in range(args.judgements):
        start = time.perf_counter()
        response = client.get("/api/v1/assignments/next/?taste=bench&prefetch=1")
        timings["next"].append(time.perf_counter() - start)
        assert response.status_code == 200, response.content
        assignment = response.json()[0]
        for side in ("left", "right"):
            start = time.perf_counter()
            image = client.get(assignment[side]["url"])
            timings["image"].append(time.perf_counter() - start)
            assert image.status_code == 200, image.status_code
            b"".join(image.streaming_content)
            views.access_image_file = lambda **_: True  # what serving an image cost before the check
            start = time.perf_counter()
            unchecked = client.get(assignment[side]["url"])
            b"".join(unchecked.streaming_content)
            timings["image_unchecked"].append(time.perf_counter() - start)
            views.access_image_file = checked
            if presigned is not None:
                name = assignment[side]["url"].removeprefix("/media/")
                start = time.perf_counter()
                url = presigned.url(name, expire=300)
                timings["presign"].append(time.perf_counter() - start)
                start = time.perf_counter()
                with urllib.request.urlopen(url) as direct:
                    direct.read()
                timings["image_direct"].append(time.perf_counter() - start)
        start = time.perf_counter()
        response = client.post("/api/v1/judgements/", {
            "assignment": assignment["id"], "choice": "left", "client_uuid": str(uuid.uuid4()),
        }, content_type="application/json")
        timings["judgement"].append(time.perf_counter() - start)
        assert response.status_code == 201, response.content
    figures = {name: {"p50_ms": round(1000 * statistics.median(v), 2), "p99_ms": round(1000 * percentile(v, 0.99), 2),
                      "calls": len(v)} for name, v in timings.items()}
    for name, figure in figures.items():
        print(f"{name:15s} p50 {figure['p50_ms']:7.2f} ms   p99 {figure['p99_ms']:7.2f} ms   ({figure['calls']} calls)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
