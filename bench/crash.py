"""Crash benchmark: annotators submit through gunicorn on PostgreSQL while workers are SIGKILLed; a set check after.

The Jepsen-style set check: every submission a client sent carries its own `client_uuid`; a client that saw no
answer (the worker died under it) sends the same submission again, with the same UUID, until it gets one. After
the run the database must hold exactly the acknowledged submissions (none lost), nothing nobody sent (none
unexpected), nothing twice, and the pair counters must agree with the rows.

1. builds the world of `bench/api_load.py` (its own PostgreSQL database, default `chisel_bench_crash`, dropped and
   recreated; the name must contain "bench");
2. starts gunicorn on 127.0.0.1 and, every `--kill-every` seconds, SIGKILLs one of its workers at random (the
   master starts a new one);
3. runs `--annotators` threads for `--duration` seconds: GET next → POST the judgement, retried with the same
   `client_uuid` after a dropped connection, a 5xx or a 429, until a final answer or `--retry-for` seconds;
4. compares what the clients sent and were acknowledged with the rows, and checks the counters:
   lost (acknowledged, not stored), unexpected (stored, never sent), duplicated (a UUID, a (pair, annotator), or a
   pair beyond its overlap, more than once), counter mismatches (`Pair.judged_count` ≠ its judgements,
   `Pair.assigned_count` ≠ its live leases plus judgements);
5. prints a table and, as the last line of stdout, one JSON object with the same figures.

Targets: lost 0, unexpected 0, duplicated 0, mismatches 0 (PASS/FAIL; the exit status stays 0). Traffic goes to
127.0.0.1 only; the run stops by itself after `--duration` seconds plus at most `--retry-for`.

    .venv/bin/python bench/crash.py --annotators 8 --duration 60 --kill-every 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from api_load import TASTE, ServerConfig, children, gunicorn, world_build
from common import django_env

NEXT_PATH = f"/api/v1/assignments/next/?taste={TASTE}&prefetch=1"
SUBMIT_PATH = "/api/v1/judgements/"
CHOICES = ("left", "right", "tie", "both_bad")


@dataclass
class ClientLog:
    """What one annotator sent and was told; merged after the run, so threads never share state."""

    sent: dict[str, int] = field(default_factory=dict)  # client_uuid → assignment id, for every UUID sent at least once
    acked: dict[str, int] = field(default_factory=dict)  # client_uuid → judgement id, answered 200 or 201
    refused: dict[str, int] = field(default_factory=dict)  # client_uuid → final 4xx status
    replays_acked: int = 0  # acknowledgements that were answered 200 (an earlier try had been stored)
    errors: Counter[str] = field(default_factory=Counter)


def annotate_loop(*, port: int, token: str, stop_at: float, retry_for: float, log: ClientLog) -> None:
    """Claim, judge, until `stop_at`; a submission without a final answer is sent again with the same UUID."""
    rng = random.Random()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, str | None]:
        nonlocal conn
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            return 0, type(exc).__name__.encode(), None

    def back_off(status: int, retry_after: str | None, attempt: int) -> None:
        wait = float(retry_after) if status == 429 and retry_after and retry_after.isdigit() else 0.05 * 2 ** min(attempt, 5)
        time.sleep(min(wait, 2.0))

    while time.monotonic() < stop_at:
        status, payload, retry_after = call("GET", NEXT_PATH)
        if status == 204:
            log.errors["next 204 (pool ran out)"] += 1
            break
        if status != 200:
            log.errors[f"next {status or payload.decode()}"] += 1
            back_off(status, retry_after, 0)
            continue
        assignment = json.loads(payload)[0]["id"]
        client_uuid = str(uuid.uuid4())
        body = json.dumps(
            {"assignment": assignment, "choice": rng.choice(CHOICES), "client_uuid": client_uuid,
             "duration_ms": rng.randrange(200, 3000)}
        ).encode()  # fmt: skip
        log.sent[client_uuid] = assignment
        give_up_at = time.monotonic() + retry_for
        attempt = 0
        while True:  # the same body, hence the same client_uuid, until a final answer
            status, payload, retry_after = call("POST", SUBMIT_PATH, body)
            if status in (200, 201):
                log.acked[client_uuid] = json.loads(payload)["id"]
                log.replays_acked += status == 200
                break
            if 400 <= status < 500 and status not in (408, 429):
                log.refused[client_uuid] = status
                log.errors[f"submit {status}"] += 1
                break
            log.errors[f"submit {status or payload.decode()}"] += 1
            if time.monotonic() > give_up_at:
                log.errors["submit gave up (no final answer)"] += 1
                break
            attempt += 1
            back_off(status, retry_after, attempt)
    conn.close()


def kill_loop(*, server_pid: int, every_s: float, stop_at: float, rng: random.Random, kills: list[int]) -> None:
    """SIGKILL one of gunicorn's workers at random every `every_s` seconds; only children of our gunicorn."""
    while time.monotonic() + every_s < stop_at:
        time.sleep(every_s)
        workers = children(server_pid)
        if not workers:
            continue
        victim = rng.choice(workers)
        try:
            os.kill(victim, signal.SIGKILL)
            kills.append(victim)
        except ProcessLookupError:
            pass


# --- the checks ------------------------------------------------------------------------------------

_COUNTER_MISMATCHES = """
    SELECT count(*) FROM annotate_pair p
    LEFT JOIN (SELECT pair_id, count(*) AS n FROM annotate_judgement GROUP BY pair_id) j ON j.pair_id = p.id
    LEFT JOIN (SELECT pair_id, count(*) AS n FROM annotate_assignment WHERE state IN ('leased', 'judged')
               GROUP BY pair_id) a ON a.pair_id = p.id
    WHERE p.judged_count <> coalesce(j.n, 0) OR p.assigned_count <> coalesce(a.n, 0)
"""
_DUPLICATES = {
    "client_uuid": "SELECT count(*) FROM (SELECT client_uuid FROM annotate_judgement GROUP BY 1 HAVING count(*) > 1) d",
    "pair_annotator": """SELECT count(*) FROM (SELECT pair_id, annotator_id FROM annotate_judgement GROUP BY 1, 2
                         HAVING count(*) > 1) d""",
    "over_overlap": """SELECT count(*) FROM (SELECT j.pair_id FROM annotate_judgement j JOIN annotate_pair p
                       ON p.id = j.pair_id GROUP BY j.pair_id, p.overlap HAVING count(*) > p.overlap) d""",
    "assignment": "SELECT count(*) FROM (SELECT assignment_id FROM annotate_judgement GROUP BY 1 HAVING count(*) > 1) d",
}


def check(*, database_url: str, logs: list[ClientLog]) -> dict:
    sent = {u: a for log in logs for u, a in log.sent.items()}
    acked = {u: j for log in logs for u, j in log.acked.items()}
    with psycopg.connect(database_url) as conn:
        stored = {str(u): (j, a) for u, j, a in conn.execute("SELECT client_uuid, id, assignment_id FROM annotate_judgement")}
        duplicated = {name: conn.execute(query).fetchone()[0] for name, query in _DUPLICATES.items()}
        mismatches = conn.execute(_COUNTER_MISMATCHES).fetchone()[0]
    # An acknowledgement names the judgement it stored: the row must be that one, on the assignment sent.
    wrong_ack = sum(1 for u, j in acked.items() if u in stored and stored[u] != (j, sent[u]))
    return {
        "sent": len(sent),
        "acknowledged": len(acked),
        "acknowledged_as_replay": sum(log.replays_acked for log in logs),
        "refused": len({u for log in logs for u in log.refused}),
        "stored": len(stored),
        "stored_unacknowledged": len(stored.keys() & sent.keys() - acked.keys()),
        "lost": len(acked.keys() - stored.keys()),
        "unexpected": len(stored.keys() - sent.keys()),
        "wrong_acknowledgement": wrong_ack,
        "duplicated": sum(duplicated.values()),
        "duplicated_by_kind": duplicated,
        "counter_mismatches": mismatches,
    }


def table(result: dict) -> str:
    rows = [
        ("sent", f"{result['sent']}"),
        ("acknowledged", f"{result['acknowledged']}  ({result['acknowledged_as_replay']} answered as a replay)"),
        ("refused (final 4xx)", str(result["refused"])),
        ("stored", f"{result['stored']}  ({result['stored_unacknowledged']} stored but never acknowledged)"),
        ("lost", str(result["lost"])),
        ("unexpected", str(result["unexpected"])),
        ("wrong acknowledgement", str(result["wrong_acknowledgement"])),
        ("duplicated", f"{result['duplicated']}  {result['duplicated_by_kind']}"),
        ("counter mismatches", str(result["counter_mismatches"])),
        ("worker kills", f"{result['kills']}  (every {result['kill_every_s']:g} s)"),
        ("errors clients saw", f"{sum(result['errors'].values())}  {result['errors'] or ''}".rstrip()),
        ("labels/s under kills", f"{result['labels_per_s']:.1f}"),
        ("annotators", str(result["annotators"])),
        ("workers", f"{result['workers']} {result['worker_class']} x {result['threads']} threads"),
        ("duration s", f"{result['duration_s']:g}"),
    ]
    rows += [(f"target {name}", "PASS" if ok else "FAIL") for name, ok in result["targets"].items()]
    width = max(len(name) for name, _ in rows)
    return "\n".join(["== crash ==", *(f"{name:<{width}}  {value}" for name, value in rows)])


# --- the command -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog="Progress goes to stderr."
    )
    parser.add_argument("--annotators", type=int, default=8, help="simulated annotators (threads) [8]")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load under kills [60]")
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between worker kills [2]")
    parser.add_argument("--retry-for", type=float, default=30.0, help="seconds a client retries one submission [30]")
    parser.add_argument("--pairs", type=int, default=5000, help="pairs in the round [5000]")
    parser.add_argument("--overlap", type=int, default=2, help="annotators per pair [2]")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers [3]")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker [4]")
    parser.add_argument("--seed", type=int, default=None, help="seed of the choice of victims [random]")
    parser.add_argument(
        "--database-url", default="postgres://postgres:postgres@127.0.0.1:5432/chisel_bench_crash",
        help="the bench database, dropped and recreated; its name must contain 'bench' [%(default)s]",
    )  # fmt: skip
    args = parser.parse_args()
    limits = {"annotators": (1, 200), "duration": (1, 3600), "kill_every": (0.1, 3600), "retry_for": (1, 600)}
    for name, (low, high) in limits.items():
        if not low <= getattr(args, name) <= high:
            sys.exit(f"--{name.replace('_', '-')} must be between {low:g} and {high:g}.")
    return args


def main() -> None:
    args = parse_args()
    server = ServerConfig(args.workers, "gthread", args.threads)
    files = tempfile.mkdtemp(prefix="chisel-bench-crash-")
    env = django_env(args.database_url, files)
    rng = random.Random(args.seed)
    try:
        print(f"Building the world in {args.database_url} ({args.pairs} pairs)…", file=sys.stderr)
        tokens = world_build(env=env, annotators=args.annotators, pairs=args.pairs, overlap=args.overlap)
        with gunicorn(env=env, config=server, token=tokens[0]) as (port, server_pid):
            print(
                f"Running {args.annotators} annotators for {args.duration:g} s, killing a worker every "
                f"{args.kill_every:g} s…",
                file=sys.stderr,
            )
            logs = [ClientLog() for _ in tokens]
            kills: list[int] = []
            stop_at = time.monotonic() + args.duration
            threads = [
                threading.Thread(
                    target=annotate_loop,
                    kwargs=dict(port=port, token=t, stop_at=stop_at, retry_for=args.retry_for, log=log),
                    daemon=True,
                )
                for t, log in zip(tokens, logs)
            ]
            killer = threading.Thread(
                target=kill_loop,
                kwargs=dict(server_pid=server_pid, every_s=args.kill_every, stop_at=stop_at, rng=rng, kills=kills),
                daemon=True,
            )
            for thread in [*threads, killer]:
                thread.start()
            for thread in [*threads, killer]:
                thread.join(timeout=args.duration + args.retry_for + 30)
        result = check(database_url=args.database_url, logs=logs)
    finally:
        shutil.rmtree(files, ignore_errors=True)
    result |= {
        "kills": len(kills),
        "kill_every_s": args.kill_every,
        "errors": dict(sum((log.errors for log in logs), Counter())),
        "labels_per_s": round(result["acknowledged"] / args.duration, 1),
        "annotators": args.annotators,
        "workers": server.workers,
        "worker_class": server.worker_class,
        "threads": server.threads,
        "duration_s": args.duration,
    }
    result["targets"] = {
        "lost == 0": result["lost"] == 0,
        "unexpected == 0": result["unexpected"] == 0,
        "duplicated == 0": result["duplicated"] == 0,
        "counter mismatches == 0": result["counter_mismatches"] == 0,
        "wrong acknowledgements == 0": result["wrong_acknowledgement"] == 0,
    }
    print(table(result) + "\n", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
