"""Load benchmark of the annotator API: simulated annotators claim and judge pairs against gunicorn on PostgreSQL.

The script builds its own world and tears down what it started:

1. drops and recreates a dedicated PostgreSQL database (default `chisel_bench`; the name must contain
   "bench", so a real database is never dropped by mistake), migrates it, seeds a taste `bench`,
   annotators `bench-0`, `bench-1`, … with API tokens, and one annotating round of `--pairs` pairs,
   and ANALYZEs it;
2. starts gunicorn (`chisel.wsgi`) on a free port of 127.0.0.1, with media and static under a temp folder;
3. runs `--annotators` threads, each with its own keep-alive connection, looping
   GET /api/v1/assignments/next/ → sleep `--think` → POST /api/v1/judgements/, for `--duration`
   seconds after `--warmup` seconds whose calls are not counted;
4. asks the database whether any pair was handed out beyond its overlap, or twice to one annotator;
5. prints a table, and as the last line of stdout one JSON object with the same figures.

`--scenario all` runs the two target scenarios against one world and one server:
(a) throughput: 20 annotators, no think time; target ≥ 150 labels/s;
(b) latency: 50 annotators, 1 s think time; target p99 ≤ 50 ms for both calls.
Zero duplicate handouts is a target of every run. Targets are reported as PASS/FAIL and never change
the exit status. The table also gives CPU milliseconds per label (gunicorn, PostgreSQL, this client) and
how busy the machine was with other work: on a shared machine, compare runs by those.

    .venv/bin/python bench/api_load.py --scenario all
    .venv/bin/python bench/api_load.py --annotators 30 --think 0.2 --duration 30
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from pathlib import Path

import psycopg

from common import database_recreate, django_env, free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
TASTE = "bench"
NEXT_PATH = f"/api/v1/assignments/next/?taste={TASTE}&prefetch=1"
SUBMIT_PATH = "/api/v1/judgements/"
CHOICES = ("left", "right", "tie")

# Gunicorn defaults. Client, server and PostgreSQL share the machine's cores, so the load is CPU-bound.
# Session 1, tried with `--scenario all` on the 2-core development VM, two rounds each, on a shared VM (other
# work took 30-50% of its CPU), with the ORM hot path (~21 ms of gunicorn CPU a label):
#
#   worker class, workers x threads   throughput labels/s   latency scenario, p99 of next
#   sync 2  (keep-alive unsupported)  36-44                 430-470 ms
#   sync 3                            45-49                  96-400 ms
#   sync 5  (2 * cores + 1)           44-46                 160-350 ms
#   gthread 2 x 4                     53-56                 100-130 ms
#   gthread 3 x 2                     45-50                 230-320 ms
#
# The hot path, step by step (`--scenario all`, idle machine: other CPU load 0-2%; CPU ms per label of
# gunicorn + PostgreSQL; throughput scenario; latency scenario p99 of next / submit):
#
#   change                                                   CPU ms/label   labels/s   p99 ms (latency)
#   before (ORM, DRF serializers, DRF TokenAuthentication)   13.1 + 4.0     108        62 / 48
#   plain SQL claim + guarded one-statement submission,      5.4 + 3.5      203        41 / 29
#     cached token lookup, plain-dict answers (gthread 2x4)  6.0-7.2 + 3.9-4.3  128-150 (reruns)
#   psycopg server-side binding + prepared statements        7.1 + 3.9      128-150    (dropped: +1 ms gunicorn)
#   whole claim as one statement (pipeline as CTEs)          5.8 + 5.1      132        33 / 26 (dropped:
#                                                                                      planning 1.4 ms a claim)
#   back to short statements, gthread 2 x 4                  6.8 + 4.3      145        34 / 24
#   same, gthread 3 x 4                                      6.4 + 4.2      164        28 / 20
#   load with scalar subqueries, not joins (3 x 4, default)  6.9-7.4 + 3.6-4.0  159-170  26-30 / 17-19
#     (latency scenario: 7.2 + 3.8-3.9 ms a label; two runs)
#
# Runs of the same code differ by ±15% in throughput here (the bench shares 2 cores with its own client);
# compare the CPU figures. gthread keeps the annotators' connections alive and overlaps one thread's
# database waits with another's Python; with the lighter requests 3 x 4 beat 2 x 4 in both scenarios.
# Override with --workers/--worker-class/--threads.
DEFAULT_WORKERS = 3
DEFAULT_WORKER_CLASS = "gthread"
DEFAULT_THREADS = 4


@dataclass(frozen=True)
class Scenario:
    name: str
    annotators: int
    think_s: float
    # Targets checked for this scenario (duplicate handouts are always checked).
    min_labels_per_s: float | None = None
    max_p99_ms: float | None = None


SCENARIOS = {
    "throughput": Scenario("throughput", annotators=20, think_s=0.0, min_labels_per_s=150.0),
    "latency": Scenario("latency", annotators=50, think_s=1.0, max_p99_ms=50.0),
}


@dataclass
class ServerConfig:
    workers: int
    worker_class: str
    threads: int


@dataclass
class AnnotatorLog:
    """What one simulated annotator saw; merged after the run, so threads never share state."""

    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    labels: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    handed: list[tuple[int, tuple]] = field(default_factory=list)  # (assignment id, the pair's two image urls)
    exhausted: bool = False


# --- the world -------------------------------------------------------------------------------------

SEED_SNIPPET = """
import io, json, sys
import django
django.setup()
from django.db import transaction
from PIL import Image as PILImage
from annotate import services
from annotate.images import image_store
from annotate.models import Image, Pair, Prompt, Round

args = json.loads(sys.argv[1])
pairs, overlap, batch = args["pairs"], args["overlap"], 2000

def png(colour):
    out = io.BytesIO()
    PILImage.new("RGB", (64, 64), colour).save(out, format="PNG")
    return out.getvalue()

with transaction.atomic():
    taste = services.taste_create(slug=args["taste"])
    tokens = [services.annotator_create(username=f"bench-{i}", tastes=[taste])[1] for i in range(args["annotators"])]
    round_ = Round.objects.create(
        taste=taste, number=1, state=Round.State.ANNOTATING, pair_quota=pairs, label_quota=pairs * overlap,
        overlap=overlap,
    )
    prompts = Prompt.objects.bulk_create((Prompt(text=f"bench prompt {i}") for i in range(pairs)), batch_size=batch)
    # Two real files; every pair gets two Image rows of its own that point at them.
    files = [image_store(prompt=prompts[0], data=png(c)) for c in ((200, 40, 40), (40, 80, 210))]
    images = Image.objects.bulk_create(
        (Image(prompt=p, file=f.file.name, sha256=f.sha256, width=f.width, height=f.height) for p in prompts for f in files),
        batch_size=batch,
    )
    Pair.objects.bulk_create(
        (
            Pair(round=round_, taste=taste, prompt=p, image_a=images[2 * i], image_b=images[2 * i + 1], overlap=overlap)
            for i, p in enumerate(prompts)
        ),
        batch_size=batch,
    )
print(json.dumps(tokens))
"""


def world_build(*, env: dict[str, str], annotators: int, pairs: int, overlap: int) -> list[str]:
    """Migrate the (empty) database and seed it; returns the annotators' API tokens."""
    database_recreate(env["DATABASE_URL"])
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    args = {"taste": TASTE, "annotators": annotators, "pairs": pairs, "overlap": overlap}
    seeded = subprocess.run([PYTHON, "-c", SEED_SNIPPET, json.dumps(args)], cwd=ROOT, env=env, capture_output=True, text=True)
    if seeded.returncode != 0:
        sys.exit(f"Seeding the bench database failed:\n{seeded.stderr}")
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        # Planner statistics, as a live database has them; without, the claim plans a slow anti-join.
        conn.execute("ANALYZE")
    return json.loads(seeded.stdout.strip().splitlines()[-1])


@contextmanager
def gunicorn(*, env: dict[str, str], config: ServerConfig, token: str) -> Iterator[tuple[int, int]]:
    """A gunicorn serving chisel.wsgi on a free port, answering `token`'s requests; yields (port, pid)."""
    port = free_port()
    command = [
        GUNICORN, "chisel.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(config.workers),
        "--worker-class", config.worker_class, "--threads", str(config.threads),
        "--log-level", "warning", "--no-control-socket", "--keep-alive", "5",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not _answers(port, token):
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn exited with status {server.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer within 60 s")
            time.sleep(0.2)
        yield port, server.pid
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _answers(port: int, token: str) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/api/v1/me/", headers={"Authorization": f"Token {token}"})
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


# --- CPU accounting (Linux /proc) ------------------------------------------------------------------
# Wall-clock figures suffer when something else runs on the machine; CPU time per label does not, and
# the CPU nobody of ours used says whether the run was disturbed.

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    server_s: float  # gunicorn master and workers
    postgres_s: float  # the backends connected to the bench database
    client_s: float  # this process: the simulated annotators
    machine_busy_s: float  # every CPU of the machine, anyone's


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            pass
    return found


def cpu_snapshot(*, server_pid: int, postgres_pids: list[int]) -> CpuSnapshot:
    # /proc/stat's first line: user nice system idle iowait irq softirq steal …, in clock ticks.
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return CpuSnapshot(
        server_s=sum(cpu_seconds(pid) for pid in [server_pid, *children(server_pid)]),
        postgres_s=sum(cpu_seconds(pid) for pid in postgres_pids),
        client_s=sum(os.times()[:2]),
        machine_busy_s=(ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / CLOCK_TICKS,
    )


def postgres_backends(database_url: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [pid for (pid,) in rows]


# --- the load --------------------------------------------------------------------------------------


def annotate_loop(
    *, port: int, token: str, think_s: float, measure_from: float, stop_at: float, log: AnnotatorLog
) -> None:
    """One annotator: claim, think, judge, until `stop_at` or until nothing is left to judge.

    Calls that complete before `measure_from` (the warm-up) or after `stop_at` are not recorded.
    """
    rng = random.Random()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float, bool]:
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            status, payload = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # reconnects on the next request
            status, payload = 0, type(exc).__name__.encode()
        ended = time.perf_counter()
        return status, payload, (ended - started) * 1000, measure_from <= ended <= stop_at

    # Start at a random point of the think time, or all annotators would stay in step and call at once.
    time.sleep(rng.uniform(0, think_s))
    while time.perf_counter() < stop_at:
        status, payload, ms, counted = call("GET", NEXT_PATH)
        if counted:
            log.next_ms.append(ms)
        if status == 204:
            log.exhausted = True
            break
        if status != 200:
            if counted:
                log.errors[f"next {status or payload.decode()}"] += 1
            time.sleep(0.05)
            continue
        assignment = json.loads(payload)[0]
        # The API names no pair (blind evaluation): its two image files identify it.
        log.handed.append((assignment["id"], tuple(sorted((assignment["left"]["url"], assignment["right"]["url"])))))
        if think_s:
            time.sleep(max(0.0, min(think_s, stop_at - time.perf_counter())))
        body = {
            "assignment": assignment["id"],
            "choice": rng.choice(CHOICES),
            "client_uuid": str(uuid.uuid4()),
            "duration_ms": int(think_s * 1000) + rng.randrange(500),
        }
        status, payload, ms, counted = call("POST", SUBMIT_PATH, json.dumps(body).encode())
        if counted:
            log.submit_ms.append(ms)
            if status == 201:
                log.labels += 1
            elif not 200 <= status < 300:
                log.errors[f"submit {status or payload.decode()}"] += 1
    conn.close()


def load_run(
    *, port: int, server_pid: int, database_url: str, tokens: list[str], think_s: float, warmup_s: float,
    duration_s: float,
) -> tuple[list[AnnotatorLog], CpuSnapshot]:
    """Run one thread per token for warm-up plus duration; returns each annotator's log and the CPU
    each party used during the measured seconds.
    """
    logs = [AnnotatorLog() for _ in tokens]
    start = time.perf_counter()
    measure_from, stop_at = start + warmup_s, start + warmup_s + duration_s
    threads = [
        threading.Thread(
            target=annotate_loop,
            kwargs=dict(port=port, token=t, think_s=think_s, measure_from=measure_from, stop_at=stop_at, log=log),
            daemon=True,
        )
        for t, log in zip(tokens, logs)
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.perf_counter()))
    backends = postgres_backends(database_url)  # warmed up: every worker holds its connection
    before = cpu_snapshot(server_pid=server_pid, postgres_pids=backends)
    time.sleep(max(0.0, stop_at - time.perf_counter()))
    after = cpu_snapshot(server_pid=server_pid, postgres_pids=backends)
    for thread in threads:
        thread.join()
    used = CpuSnapshot(*(b - a for a, b in zip(astuple(before), astuple(after))))
    return logs, used


# --- the checks and figures ------------------------------------------------------------------------


def duplicate_handouts_in_database(database_url: str) -> int:
    """Pairs leased or judged by more annotators than their overlap, plus (pair, annotator) repeats.

    This is the authority; the client-side count only cross-checks it.
    """
    over_overlap = """
        SELECT count(*) FROM (
            SELECT a.pair_id FROM annotate_assignment a JOIN annotate_pair p ON p.id = a.pair_id
            WHERE a.state IN ('leased', 'judged')
            GROUP BY a.pair_id, p.overlap HAVING count(*) > p.overlap
        ) AS over
    """
    repeated = """
        SELECT count(*) FROM (
            SELECT pair_id, annotator_id FROM annotate_assignment GROUP BY pair_id, annotator_id HAVING count(*) > 1
        ) AS repeated
    """
    with psycopg.connect(database_url) as conn:
        return sum(conn.execute(query).fetchone()[0] for query in (over_overlap, repeated))


def duplicate_handouts_seen(logs: list[AnnotatorLog], overlap: int) -> int:
    """Assignments handed to two annotators, plus pairs handed to more annotators than their overlap.

    No lease expires and nothing is skipped during a run, so every handout still counts against overlap.
    """
    annotators_of_assignment: dict[int, set[int]] = {}
    annotators_of_pair: dict[tuple, set[int]] = {}
    for annotator, log in enumerate(logs):
        for assignment_id, pair_id in log.handed:
            annotators_of_assignment.setdefault(assignment_id, set()).add(annotator)
            annotators_of_pair.setdefault(pair_id, set()).add(annotator)
    return sum(len(a) > 1 for a in annotators_of_assignment.values()) + sum(
        len(a) > overlap for a in annotators_of_pair.values()
    )


def percentiles(samples: list[float]) -> dict[str, float | None]:
    """p50, p95 and p99 in milliseconds (nearest rank), None when there are no samples."""
    ordered = sorted(samples)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None}
    rank = lambda q: ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]  # noqa: E731
    return {"p50": round(rank(0.50), 2), "p95": round(rank(0.95), 2), "p99": round(rank(0.99), 2)}


def figures(
    *, scenario: Scenario, logs: list[AnnotatorLog], cpu: CpuSnapshot, server: ServerConfig, duration_s: float,
    db_dups: int, overlap: int,
) -> dict:
    errors = sum((log.errors for log in logs), Counter())
    labels = max(1, sum(log.labels for log in logs))
    others_s = cpu.machine_busy_s - cpu.server_s - cpu.postgres_s - cpu.client_s
    result = {
        "scenario": scenario.name,
        "labels_per_s": round(sum(log.labels for log in logs) / duration_s, 1),
        "labels": sum(log.labels for log in logs),
        "next_ms": percentiles([ms for log in logs for ms in log.next_ms]),
        "submit_ms": percentiles([ms for log in logs for ms in log.submit_ms]),
        "requests": sum(len(log.next_ms) + len(log.submit_ms) for log in logs),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "duplicate_handouts": db_dups,
        "duplicate_handouts_client": duplicate_handouts_seen(logs, overlap),
        "pool_exhausted": any(log.exhausted for log in logs),
        # CPU per label is the figure to compare between runs on a shared or noisy machine.
        "cpu_ms_per_label": {
            "server": round(1000 * cpu.server_s / labels, 1),
            "postgres": round(1000 * cpu.postgres_s / labels, 1),
            "client": round(1000 * cpu.client_s / labels, 1),
        },
        # CPU that neither the bench nor its server nor its database used, as % of all cores.
        "other_cpu_pct": round(max(0.0, 100 * others_s / ((os.cpu_count() or 1) * duration_s)), 1),
        "annotators": scenario.annotators,
        "think_s": scenario.think_s,
        "workers": server.workers,
        "worker_class": server.worker_class,
        "threads": server.threads,
        "duration_s": duration_s,
    }
    result["targets"] = targets(scenario, result)
    return result


def targets(scenario: Scenario, result: dict) -> dict[str, bool]:
    checks = {"duplicate_handouts == 0": result["duplicate_handouts"] == 0}
    if scenario.min_labels_per_s is not None:
        checks[f"labels_per_s >= {scenario.min_labels_per_s:g}"] = result["labels_per_s"] >= scenario.min_labels_per_s
    if scenario.max_p99_ms is not None:
        p99s = (result["next_ms"]["p99"], result["submit_ms"]["p99"])
        checks[f"p99 <= {scenario.max_p99_ms:g} ms"] = all(p is not None and p <= scenario.max_p99_ms for p in p99s)
    return checks


def table(result: dict) -> str:
    def ms(d: dict) -> str:
        return " / ".join("-" if d[k] is None else f"{d[k]:.1f}" for k in ("p50", "p95", "p99"))

    server = f"{result['workers']} {result['worker_class']}" + (
        f" x {result['threads']} threads" if result["worker_class"] == "gthread" else ""
    )
    rows = [
        ("labels/s", f"{result['labels_per_s']:.1f}  ({result['labels']} labels)"),
        ("next ms p50/p95/p99", ms(result["next_ms"])),
        ("submit ms p50/p95/p99", ms(result["submit_ms"])),
        ("errors", f"{result['errors']}  {result['error_kinds'] or ''}".rstrip()),
        ("duplicate handouts", f"{result['duplicate_handouts']} (client saw {result['duplicate_handouts_client']})"),
        ("CPU ms/label", ", ".join(f"{k} {v:.1f}" for k, v in result["cpu_ms_per_label"].items())),
        ("other CPU load", f"{result['other_cpu_pct']:.0f}% of {os.cpu_count()} cores"
         + ("  (machine busy: wall-clock figures unreliable)" if result["other_cpu_pct"] > 10 else "")),
        ("annotators", str(result["annotators"])),
        ("think time s", f"{result['think_s']:g}"),
        ("workers", server),
        ("duration s", f"{result['duration_s']:g}" + ("  (pool ran out of pairs!)" if result["pool_exhausted"] else "")),
    ]
    rows += [(f"target {name}", "PASS" if ok else "FAIL") for name, ok in result["targets"].items()]
    width = max(len(name) for name, _ in rows)
    title = f"== {result['scenario']} =="
    return "\n".join([title, *(f"{name:<{width}}  {value}" for name, value in rows)])


# --- the command -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog="Progress goes to stderr."
    )
    parser.add_argument(
        "--scenario", choices=["custom", *SCENARIOS, "all"], default="custom",
        help="a target scenario, or all of them in one go; custom (default) uses --annotators and --think",
    )  # fmt: skip
    parser.add_argument("--annotators", type=int, default=20, help="simulated annotators (threads) [20]")
    parser.add_argument("--think", type=float, default=0.0, help="seconds between claiming and judging [0]")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per scenario [20]")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring [3]")
    parser.add_argument("--pairs", type=int, default=20000, help="pairs in the round [20000]")
    parser.add_argument("--overlap", type=int, default=2, help="annotators per pair [2]")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help=f"gunicorn workers [{DEFAULT_WORKERS}]")
    parser.add_argument(
        "--worker-class", choices=["sync", "gthread"], default=DEFAULT_WORKER_CLASS,
        help=f"gunicorn worker class [{DEFAULT_WORKER_CLASS}]",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=f"threads per gthread worker [{DEFAULT_THREADS}]")
    parser.add_argument(
        "--database-url", default="postgres://postgres:postgres@127.0.0.1:5432/chisel_bench",
        help="the bench database, dropped and recreated; its name must contain 'bench' [%(default)s]",
    )  # fmt: skip
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.scenario == "all":
        scenarios = list(SCENARIOS.values())
    elif args.scenario == "custom":
        scenarios = [Scenario("custom", annotators=args.annotators, think_s=args.think)]
    else:
        scenarios = [SCENARIOS[args.scenario]]
    server = ServerConfig(args.workers, args.worker_class, args.threads)
    files = tempfile.mkdtemp(prefix="chisel-bench-")
    env = django_env(args.database_url, files)
    results = []
    try:
        print(f"Building the world in {args.database_url} ({args.pairs} pairs)…", file=sys.stderr)
        started = time.perf_counter()
        tokens = world_build(
            env=env, annotators=max(s.annotators for s in scenarios), pairs=args.pairs, overlap=args.overlap
        )
        print(f"…built in {time.perf_counter() - started:.1f} s; starting gunicorn.", file=sys.stderr)
        with gunicorn(env=env, config=server, token=tokens[0]) as (port, server_pid):
            for scenario in scenarios:
                print(
                    f"Running {scenario.name}: {scenario.annotators} annotators, think {scenario.think_s:g} s, "
                    f"{args.warmup:g} s warm-up + {args.duration:g} s…",
                    file=sys.stderr,
                )
                logs, cpu = load_run(
                    port=port, server_pid=server_pid, database_url=args.database_url,
                    tokens=tokens[: scenario.annotators], think_s=scenario.think_s, warmup_s=args.warmup,
                    duration_s=args.duration,
                )  # fmt: skip
                db_dups = duplicate_handouts_in_database(args.database_url)
                result = figures(
                    scenario=scenario, logs=logs, cpu=cpu, server=server, duration_s=args.duration, db_dups=db_dups,
                    overlap=args.overlap,
                )  # fmt: skip
                results.append(result)
                print(table(result) + "\n", flush=True)
    finally:
        shutil.rmtree(files, ignore_errors=True)
    if len(results) == 1:
        print(json.dumps(results[0]))
    else:
        print(json.dumps({"scenarios": {r["scenario"]: r for r in results}}))


if __name__ == "__main__":
    main()
