"""Cohort benchmark: do the lead's figures find the camps and the careless annotators, and how fast do their pages render?

1. drops and recreates a dedicated PostgreSQL database (default `chisel_cohort_bench`; the name must contain
   "bench"), migrates it and seeds a taste with one annotating round of `--pairs` pairs (default 600) at
   overlap 3, each pair two of 24 stored pictures whose backgrounds go from flat to textured;
2. 12 simulated annotators judge every pair through the real API (Django's test client, in process, on
   PostgreSQL), in shuffled turns: 5 with the toy world's `textured` oracle, 5 with `flat`, one `random`
   and one `always_left` who also answers faster than the taste's speed floor;
3. prints the recovered camps (adjusted Rand index against the truth over the 10 camp annotators, target
   1.0), who was flagged and why, Krippendorff's α within each camp and across them;
4. times the lead's annotator page (table, sparklines, heat map) and its API at that size, then again after
   bulk-adding judgements up to 50 annotators × 20,000 judgements (target under 500 ms each);
5. prints one JSON object with the figures as the last line of stdout.

    .venv/bin/python bench/cohort.py
    .venv/bin/python bench/cohort.py --pairs 300 --big-judgements 20000
"""

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np

from common import database_recreate, django_env  # noqa: E402

# The app's packages, not bench's scripts of the same names (bench/sampler.py).
HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [str(Path(HERE).parent)] + [p for p in sys.path if p not in (HERE, "")]

DEFAULT_URL = "postgres://postgres:postgres@127.0.0.1:5432/chisel_cohort_bench"
CAMP_SIZE = 5


def picture(roughness: float, seed: int) -> bytes:
    """A 64 × 64 toy picture: a grey disc on a background with noise of `roughness` (0: flat)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.full((64, 64, 3), 150.0) + rng.normal(0, roughness, (64, 64, 3))
    yy, xx = np.mgrid[:64, :64]
    pixels[(yy - 32) ** 2 + (xx - 32) ** 2 < 14**2] = (90, 60, 200)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def seed_world(pairs: int, overlap: int):
    from annotate import services
    from annotate.images import image_store
    from annotate.models import Pair, Prompt, Round

    taste = services.taste_create(slug="cohort", name="Cohort")
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=overlap,
                                  pair_quota=pairs, label_quota=pairs * overlap)
    prompt = Prompt.objects.create(text="a disc on a background")
    images = [image_store(prompt=prompt, data=picture(r, i), seed=i) for i, r in enumerate(np.linspace(0, 40, 24))]
    rng = random.Random(0)
    Pair.objects.bulk_create(
        Pair(round=round_, taste=taste, prompt=prompt, image_a=a, image_b=b, overlap=overlap)
        for a, b in (rng.sample(images, 2) for _ in range(pairs))
    )
    return taste, round_


def play(taste, cohort) -> int:
    """Shuffled turns over the API until nobody gets a pair; returns the judgements made."""
    from django.conf import settings
    from PIL import Image
    from rest_framework.test import APIClient

    from sampler.toy.oracles import judge

    pictures: dict[str, Image.Image] = {}

    def load(url: str) -> Image.Image:
        if url not in pictures:
            pictures[url] = Image.open(Path(settings.MEDIA_ROOT) / url.removeprefix(settings.MEDIA_URL)).convert("RGB")
        return pictures[url]

    clients = []
    for token, oracle, duration in cohort:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        clients.append((client, oracle, duration, random.Random(len(clients))))
    active, turns, judged = set(range(len(clients))), random.Random(7), 0
    while active:
        order = sorted(active)
        turns.shuffle(order)
        for k in order:
            client, oracle, duration, rng = clients[k]
            response = client.get("/api/v1/assignments/next/", {"taste": taste.slug})
            if response.status_code == 204:
                active.discard(k)
                continue
            (item,) = response.json()
            choice = judge(oracle, load(item["left"]["url"]), load(item["right"]["url"]), rng=rng)
            body = {"assignment": item["id"], "choice": choice, "client_uuid": str(uuid.uuid4()), "duration_ms": duration}
            assert client.post("/api/v1/judgements/", body, format="json").status_code == 201
            judged += 1
    return judged


def timed(fn, repeat: int = 3) -> float:
    """The best of `repeat` runs, in ms (the first also warms caches)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - started) * 1000)
    return best


def page_times(taste, lead) -> dict:
    from django.test import Client
    from django.urls import reverse
    from rest_framework.test import APIClient

    browser = Client()
    browser.force_login(lead)
    api = APIClient()
    api.force_authenticate(lead)
    some = taste.annotators.order_by("pk").first()
    page = reverse("admin:annotate_taste_annotators", args=[taste.pk])
    one = reverse("admin:annotate_taste_annotator", args=[taste.pk, some.pk])
    for url in (page, one):
        assert browser.get(url).status_code == 200, url
    return {
        "table_page_ms": round(timed(lambda: browser.get(page)), 1),
        "annotator_page_ms": round(timed(lambda: browser.get(one)), 1),
        "api_ms": round(timed(lambda: api.get(f"/api/v1/tastes/{taste.slug}/annotators/")), 1),
    }


def grow(taste, round_, annotators: int, judgements: int) -> None:
    """Bulk-add annotators and judgements (two camps answering by image A/B with 10% noise) up to the sizes asked."""
    from django.db.models import F
    from django.utils import timezone

    from annotate import services
    from annotate.models import Assignment, Judgement, Pair, TasteMembership

    have = TasteMembership.objects.filter(taste=taste).count()
    for i in range(have, annotators):
        services.annotator_create(username=f"bulk-{i}", tastes=[taste], password=None)
    users = list(taste.annotators.order_by("pk").values_list("pk", flat=True))
    need = judgements - Judgement.objects.filter(pair__taste=taste).count()
    overlap = 3
    template = Pair.objects.filter(round=round_).first()
    fresh = Pair.objects.bulk_create(
        Pair(round=round_, taste=taste, prompt_id=template.prompt_id, image_a_id=template.image_a_id,
             image_b_id=template.image_b_id, overlap=overlap, assigned_count=overlap, judged_count=overlap)
        for _ in range(need // overlap)
    )
    rng, now = random.Random(1), timezone.now()
    assignments, answers = [], []
    for pair in fresh:
        for user in rng.sample(users, overlap):
            assignments.append(Assignment(pair=pair, annotator_id=user, left_is_a=rng.random() < 0.5, state="judged",
                                          claimed_at=now, lease_expires_at=now + timedelta(minutes=5), closed_at=now))
    Assignment.objects.bulk_create(assignments, batch_size=5000)
    for a in assignments:
        camp_a = a.annotator_id % 2 == 0
        choice = ("a" if camp_a else "b") if rng.random() > 0.1 else rng.choice(["a", "b", "tie"])
        answers.append(Judgement(assignment=a, pair_id=a.pair_id, annotator_id=a.annotator_id, choice=choice,
                                 duration_ms=rng.randint(800, 9000)))
    Judgement.objects.bulk_create(answers, batch_size=5000)
    Pair.objects.filter(pk__in=[p.pk for p in fresh]).update(judged_count=F("overlap"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--big-annotators", type=int, default=50)
    parser.add_argument("--big-judgements", type=int, default=20000)
    args = parser.parse_args()

    database_recreate(args.database_url)
    files = tempfile.mkdtemp(prefix="chisel-cohort-bench-")
    os.environ.update(django_env(args.database_url, files))
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from annotate import services
    from annotate.agreement import adjusted_rand_index, alpha, category_codes
    from annotate.annotator_stats import taste_annotator_stats

    taste, round_ = seed_world(args.pairs, overlap=3)
    spec = ([("textured", CAMP_SIZE), ("flat", CAMP_SIZE), ("random", 1), ("always_left", 1)])
    cohort, truth = [], {}
    for oracle, n in spec:
        for i in range(n):
            user, token = services.annotator_create(username=f"{oracle}-{i}", tastes=[taste], password=None)
            cohort.append((token, oracle, 300 if oracle == "always_left" else 2500 + 100 * i))
            truth[user.username] = oracle
    started = time.perf_counter()
    judged = play(taste, cohort)
    play_s = time.perf_counter() - started

    stats = taste_annotator_stats(taste=taste)
    rows = {r["username"]: r for r in stats["annotators"]}
    campers = [name for name, oracle in truth.items() if oracle in ("textured", "flat")]
    ari = adjusted_rand_index([truth[n] for n in campers], [rows[n]["camp"] for n in campers])
    print(f"{judged} judgements by {len(cohort)} annotators over the API in {play_s:.1f} s")
    print(f"camps found: {stats['camps']['camps']}; adjusted Rand index over the camp annotators: {ari:.3f} (target 1.0)")
    for camp in stats["camps"]["camps"]:
        print(f"  camp {camp['camp']}: {', '.join(camp['usernames'])}  (α within {camp['alpha']:.3f})")
    print("flagged:")
    for name, row in rows.items():
        if row["flags"]:
            print(f"  {name}: {', '.join(row['flags'])}  (agreement {row['camp_agreement'] or row['agreement']:.2f}, "
                  f"left {row['left_share']:.2f}, median {row['median_ms']:.0f} ms, trust {row['trust']:.2f})")
    wrongly = [n for n in campers if rows[n]["flags"]]
    missed = [n for n, o in truth.items() if o in ("random", "always_left") and not rows[n]["flags"]]
    # α within each true camp and across them (one camp annotator of each side).
    from annotate.models import Judgement

    def alpha_of(names):
        judgements = list(Judgement.objects.filter(pair__taste=taste, annotator__username__in=names)
                          .values_list("annotator__username", "pair_id", "choice"))
        who = {n: i for i, n in enumerate(names)}
        units = {p: i for i, p in enumerate(sorted({j[1] for j in judgements}))}
        matrix = np.full((len(names), len(units)), np.nan)
        for name, pair_id, choice in judgements:
            matrix[who[name], units[pair_id]] = category_codes([choice])[0]
        return alpha(matrix)

    textured = [n for n in campers if truth[n] == "textured"]
    flat = [n for n in campers if truth[n] == "flat"]
    alphas = {"textured": alpha_of(textured), "flat": alpha_of(flat), "both camps": alpha_of(campers),
              "everybody": stats["alpha"]}
    print("Krippendorff's α: " + ", ".join(f"{k} {v:.3f}" for k, v in alphas.items() if v is not None))

    from django.contrib.auth import get_user_model

    lead = get_user_model().objects.create_user("lead", is_staff=True, is_superuser=True)
    small = page_times(taste, lead)
    print(f"pages at {len(cohort)} annotators × {judged} judgements: {small} (target < 500 ms)")
    grow(taste, round_, args.big_annotators, args.big_judgements)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    big = page_times(taste, lead)
    n_big = Judgement.objects.filter(pair__taste=taste).count()
    print(f"pages at {taste.annotators.count()} annotators × {n_big} judgements: {big} (target < 500 ms)")
    result = {
        "judgements": judged, "ari": ari, "camps": stats["camps"]["camps"], "wrongly_flagged": wrongly,
        "missed": missed, "flags": {n: r["flags"] for n, r in rows.items() if r["flags"]}, "alpha": alphas,
        "small": small, "big": {**big, "annotators": taste.annotators.count(), "judgements": n_big},
        "pass": ari == 1.0 and not wrongly and not missed and max(*small.values(), *big.values()) < 500,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
