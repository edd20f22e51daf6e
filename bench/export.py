"""Export speed and memory: rows/s and peak memory of a Pick-a-Pic export of 100,000 synthetic judgements.

Builds a throw-away PostgreSQL database (`chisel_bench_export`) holding `--judgements` judgements
(pairs judged twice, 64×64 PNGs drawn from a pool of files), then runs `export_preferences` in fresh
processes for a tenth of the rows and for all of them, so that flat memory shows as the same peak.

    .venv/bin/python bench/export.py                 # 100,000 judgements
    .venv/bin/python bench/export.py --judgements 20000
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, database_recreate, django_env

SEED = r"""
import io, json, sys, uuid, random
from datetime import timedelta
import django
django.setup()
from django.db import transaction
from django.utils import timezone
from PIL import Image as PILImage
from annotate import services
from annotate.images import image_store
from annotate.models import Assignment, Image, Judgement, Pair, Prompt, Round

judgements, batch = int(sys.argv[1]), 5000
pairs = judgements // 2
rng = random.Random(0)

def png(colour):
    out = io.BytesIO()
    PILImage.effect_noise((64, 64), 40).convert("RGB").point(lambda v: (v + colour) % 256).save(out, format="PNG")
    return out.getvalue()

with transaction.atomic():
    taste = services.taste_create(slug="bench")
    annotators = [services.annotator_create(username=f"bench-{i}", tastes=[taste])[0] for i in range(20)]
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=2, pair_quota=pairs)
    prompts = Prompt.objects.bulk_create(Prompt(text=f"a bench prompt {i}") for i in range(1000))
    files = [image_store(prompt=prompts[0], data=png(c), params={"guidance": 3.5}) for c in range(0, 200)]
    now = timezone.now()
    for start in range(0, pairs, batch):
        count = min(batch, pairs - start)
        images = Image.objects.bulk_create(
            Image(prompt=prompts[(start + i // 2) % 1000], file=f.file.name, sha256=f.sha256, width=64, height=64,
                  params={"guidance": 3.5, "steps": 28}, seed=start * 2 + i)
            for i, f in ((i, files[rng.randrange(200)]) for i in range(2 * count))
        )
        made = Pair.objects.bulk_create(
            Pair(round=round_, taste=taste, prompt=prompts[(start + i) % 1000], image_a=images[2 * i],
                 image_b=images[2 * i + 1], overlap=2, assigned_count=2, judged_count=2)
            for i in range(count)
        )
        assignments = Assignment.objects.bulk_create(
            Assignment(pair=p, annotator=annotators[(k + j) % 20], left_is_a=rng.random() < 0.5, state="judged",
                       claimed_at=now, lease_expires_at=now + timedelta(minutes=10))
            for k, p in enumerate(made) for j in (0, 1)
        )
        Judgement.objects.bulk_create(
            Judgement(assignment=a, pair_id=a.pair_id, annotator_id=a.annotator_id, client_uuid=uuid.uuid4(),
                      choice=rng.choice("aab") if rng.random() > 0.1 else "tie", duration_ms=rng.randint(500, 9000))
            for a in assignments
        )
        print(f"\rseeded {start + count}/{pairs} pairs", end="", file=sys.stderr)
print(file=sys.stderr)
"""

RUN = r"""
import json, resource, sys, time
from pathlib import Path
import django
django.setup()
from annotate.exports import ExportOptions, export_preferences


out = Path(sys.argv[2])
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

started = time.perf_counter()
summary = export_preferences(ExportOptions(out=out, ties="keep"))
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": summary.rows, "judgements": summary.judgements, "seconds": seconds,
                  "baseline_mb": baseline / 1024, "peak_mb": peak / 1024, "bytes": out.stat().st_size}))
"""


def export_run(env: dict, judgements: int, out: Path) -> dict:
    """One export in a fresh process; the database holds `judgements` rows, all exported."""
    result = subprocess.run([sys.executable, "-c", RUN, str(judgements), str(out)], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judgements", type=int, default=100_000)
    parser.add_argument("--database-url", default="postgres://postgres:postgres@127.0.0.1:5432/chisel_bench_export")
    args = parser.parse_args()

    files = tempfile.mkdtemp(prefix="chisel-bench-export-")
    env = django_env(args.database_url, files)
    results = {}
    for size in (args.judgements // 10, args.judgements):
        print(f"Building a world of {size} judgements…", file=sys.stderr)
        database_recreate(args.database_url)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        subprocess.run([sys.executable, "-c", SEED, str(size)], cwd=ROOT, env=env, check=True)
        print("Exporting…", file=sys.stderr)
        results[size] = export_run(env, size, Path(files, f"export-{size}.parquet"))
    small, large = results[args.judgements // 10], results[args.judgements]
    figures = {
        "judgements": large["judgements"],
        "rows": large["rows"],
        "seconds": round(large["seconds"], 2),
        "rows_per_s": round(large["rows"] / large["seconds"], 1),
        "file_mb": round(large["bytes"] / 2**20, 1),
        "peak_rss_mb": round(large["peak_mb"], 1),
        "peak_above_baseline_mb": round(large["peak_mb"] - large["baseline_mb"], 1),
        "tenth_size_peak_above_baseline_mb": round(small["peak_mb"] - small["baseline_mb"], 1),
    }
    print("Pick-a-Pic export (parquet, zstd, row groups of 256, lossless PNGs)")
    for name, value in figures.items():
        print(f"  {name:<36} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
