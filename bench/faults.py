"""Fault benchmark: one round on the toy model while its workers are SIGKILLed. Does it complete, whole, resumed?

1. makes its own PostgreSQL database (default `chisel_bench_faults`, dropped and recreated; the name must contain
   "bench"), uses Redis database 13 (flushed) as the broker, and keeps every file in a fresh temporary folder;
2. launches a demo round on a toy model (`models/toy-sd` by default): `--pairs` train pairs at overlap 1,
   `--eval-pairs` eval pairs, `--steps` training steps with a resumable state every `--checkpoint-every` steps;
3. starts two Celery workers, each its own process: one for the `sample` queue, one for `train` and `celery`.
   The bench plays the beat (refill, advance, requeue stale training, every second) and one annotator who
   judges every pair it is given (the toy world's `dark` oracle), in this process;
4. SIGKILLs the sampling worker `--sample-kills` times, `--sample-kill-after` seconds into a task (the first
   while it samples train pairs, the next while it samples eval pairs) and the training worker `--train-kills` times (each once the run is a few steps past a
   saved state), restarting each at once. Holds and leases are short here (`CHISEL_SAMPLING_HOLD_SECONDS`,
   `CHISEL_TRAIN_LEASE_SECONDS`) so the beat retries within seconds, and `CHISEL_TRAIN_MAX_ATTEMPTS` allows the
   kills plus two;
5. prints whether the round completed, the round's child checkpoints (target 1), checkpoint and state folders
   without their COMPLETE marker (target 0; the hidden leftovers of killed writes are counted apart: the next
   run in that folder removes them), the steps trained in all against the configured steps (resumed: the
   configured steps plus what each killed attempt did past its last saved state; restarted: up to kills + 1
   times as many), attempts, kills and wall time; a table, then the same figures as one JSON object.

    .venv/bin/python bench/faults.py
    .venv/bin/python bench/faults.py --model models/toy-flux --steps 40

With `CHISEL_STORAGE=s3` and the `CHISEL_S3_*` settings in the environment, the workers keep images, states and
checkpoints in the bucket (the next attempt fetches the states from there).
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from common import ROOT, database_recreate, django_env  # noqa: E402

HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p not in (HERE, "")]  # the app's packages, not bench's scripts

BROKER = "redis://127.0.0.1:6379/13"
CELERY = str(ROOT / ".venv" / "bin" / "celery")
RESUMED = re.compile(r"Resuming from .*\(step (\d+)\)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "toy-sd")
    parser.add_argument("--database-url", default="postgres://postgres:postgres@127.0.0.1:5432/chisel_bench_faults")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--eval-pairs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--train-kills", type=int, default=3)
    parser.add_argument("--sample-kills", type=int, default=2)
    parser.add_argument("--sample-kill-after", type=float, default=2.0,
                        help="seconds into a sample task at which its worker is killed")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    return parser.parse_args()


class Worker:
    """A Celery worker in its own process group, SIGKILLed and started again on demand; its log goes to a file."""

    def __init__(self, name: str, queues: str, env: dict, log: Path) -> None:
        self.name, self.queues, self.env, self.log = name, queues, env, log
        self.process: subprocess.Popen | None = None
        self.kills, self.log_offset = 0, 0

    def log_since_start(self) -> str:
        with self.log.open() as log:
            log.seek(self.log_offset)
            return log.read()

    def start(self) -> None:
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [CELERY, "-A", "chisel", "worker", "--pool", "solo", "--loglevel", "INFO", "-Q", self.queues,
                 "-n", f"{self.name}@faults", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.kills += 1
        self.start()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


class Annotator(threading.Thread):
    """One annotator judging, in this process, every pair the taste hands them (the `dark` oracle)."""

    def __init__(self, taste) -> None:
        super().__init__(daemon=True)
        self.taste, self.stopped, self.judged = taste, threading.Event(), 0

    def run(self) -> None:
        from django.core.files.storage import default_storage
        from django.db import connection
        from PIL import Image

        from annotate import services
        from annotate.errors import DomainError
        from sampler.toy.oracles import judge

        user, _ = services.annotator_create(username="faults-annotator", tastes=[self.taste])
        rng = random.Random(0)
        try:
            while not self.stopped.wait(0.2):
                for assignment in services.assignment_claim(annotator=user, taste=self.taste, count=8):
                    pair = assignment.pair
                    images = []
                    for image in (pair.image_a, pair.image_b):
                        with default_storage.open(image.file.name, "rb") as handle:
                            images.append(Image.open(handle).convert("RGB"))
                    left, right = images if assignment.left_is_a else images[::-1]
                    try:
                        services.judgement_submit(annotator=user, assignment_id=assignment.pk, client_uuid=uuid.uuid4(),
                                                  choice=judge("dark", left, right, rng=rng))
                        self.judged += 1
                    except DomainError:  # the round moved on under this pair: on to the next
                        pass
        finally:
            connection.close()


def last_step(metrics: Path) -> int:
    """The last step the run's metrics record (0 before the first)."""
    try:
        lines = metrics.read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (OSError, ValueError, KeyError, IndexError):
        return 0


def folders_without_marker(root: Path) -> tuple[list[str], list[str]]:
    """(LoRA and state folders lacking their COMPLETE marker, hidden leftovers of killed writes) under `root`."""
    from trainer.checkpoints import COMPLETE

    incomplete, leftovers = [], []
    for folder in root.rglob("*"):
        if not folder.is_dir():
            continue
        if folder.name.startswith("."):
            leftovers.append(str(folder.relative_to(root)))
        elif (folder.name.startswith("checkpoint") or folder.parent.name == "states") and not (folder / COMPLETE).exists():
            incomplete.append(str(folder.relative_to(root)))
    return incomplete, [f for f in leftovers if not any(f.startswith(p + "/") for p in leftovers if p != f)]


def main() -> None:
    args = parse_args()
    if not (args.model / "model_index.json").is_file():
        sys.exit(f"{args.model} is not a diffusers model folder: build it with `manage.py toy_model build` "
                 "(models/toy-flux), then `manage.py toy_model build --family sd` (models/toy-sd).")
    import redis

    redis.Redis.from_url(BROKER).flushdb()
    files = Path(tempfile.mkdtemp(prefix="chisel-faults-"))
    database_recreate(args.database_url)
    env = {**django_env(args.database_url, str(files)), "CHISEL_CHECKPOINT_ROOT": str(files / "checkpoints"),
           "CELERY_BROKER_URL": BROKER, "CHISEL_SAMPLING_HOLD_SECONDS": "12", "CHISEL_TRAIN_LEASE_SECONDS": "9",
           "CHISEL_TRAIN_MAX_ATTEMPTS": str(args.train_kills + 2), "OMP_NUM_THREADS": "1", "LOG_LEVEL": "INFO"}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from annotate import loop, services, tasks
    from annotate.demo import demo_sampling_round
    from annotate.models import Checkpoint, Pair, Round, TrainingJob

    call_command("migrate", verbosity=0)
    taste = services.taste_create(slug="faults")
    import annotate.demo as demo

    demo.TOY_MODEL = args.model.resolve()
    round_ = demo_sampling_round(taste=taste, pairs=args.pairs, overlap=1, eval_pairs=args.eval_pairs,
                                 train_steps=args.steps)
    Round.objects.filter(pk=round_.pk).update(
        training_config={**round_.training_config, "checkpoint_every": args.checkpoint_every}, label_quota=args.pairs)

    sampler = Worker("sample", "sample", env, files / "sample-worker.log")
    trainer = Worker("train", "train,celery", env, files / "train-worker.log")
    for worker in (sampler, trainer):
        worker.start()
    annotator = Annotator(Round.objects.get(pk=round_.pk).taste)
    annotator.start()
    started = time.monotonic()
    kill_steps: list[int] = []  # the step each killed training attempt had reached
    state = ""
    try:
        while time.monotonic() - started < args.timeout:
            tasks.refill_sample_buffers()
            tasks.advance_rounds()
            tasks.requeue_stale_training()
            state = loop.round_progress(round_id=round_.pk)["state"]
            if state in (Round.State.DONE, Round.State.FAILED, Round.State.CANCELLED):
                break
            if sampler.kills < args.sample_kills:
                task = "sample_pairs" if sampler.kills == 0 else "sample_round_eval"
                if f"annotate.tasks.{task}[" in sampler.log_since_start():  # it took a batch: kill it mid-way
                    time.sleep(args.sample_kill_after)
                    made = Pair.objects.filter(round_id=round_.pk).count()
                    sampler.kill()
                    print(f"killed the sampling worker {args.sample_kill_after} s into a {task} task ({made} pairs "
                          "in)", file=sys.stderr)
            job = TrainingJob.objects.filter(round_id=round_.pk).first()
            if job is not None and job.state == TrainingJob.State.RUNNING and trainer.kills < args.train_kills:
                from annotate.training import training_run_dir

                reached = last_step(training_run_dir(job) / "metrics.jsonl")
                if reached >= (kill_steps[-1] if kill_steps else 0) + args.checkpoint_every + 2:
                    trainer.kill()
                    kill_steps.append(reached)
                    print(f"killed the training worker at step {reached}", file=sys.stderr)
            time.sleep(1.0)
    finally:
        annotator.stopped.set()
        annotator.join(timeout=30)
        for worker in (sampler, trainer):
            worker.stop()
    wall = time.monotonic() - started

    round_ = Round.objects.get(pk=round_.pk)
    job = TrainingJob.objects.filter(round_id=round_.pk).first()
    children = Checkpoint.objects.filter(parent=round_.parent_checkpoint).count()
    incomplete, leftovers = folders_without_marker(files / "checkpoints")
    resumes = [int(m.group(1)) for m in RESUMED.finditer((files / "train-worker.log").read_text())]
    # Attempt i+1 went on from resumes[i]; attempt 1 started at 0. Steps trained = Σ (reached − start) per attempt.
    starts = [0, *resumes]
    ends = [*kill_steps, args.steps if round_.state == Round.State.DONE else None]
    trained = sum(end - start for start, end in zip(starts, ends) if end is not None)
    figures = {
        "model": args.model.name, "completed": round_.state == Round.State.DONE, "state": round_.state,
        "error": round_.error, "decision": (round_.decision or {}).get("promote"), "child_checkpoints": children,
        "incomplete_folders": len(incomplete), "leftover_temp_folders": len(leftovers),
        "configured_steps": args.steps, "steps_trained": trained, "resumed_from": resumes, "killed_at": kill_steps,
        "attempts": job.attempt if job else 0, "train_kills": trainer.kills, "sample_kills": sampler.kills,
        "judgements": annotator.judged, "wall_s": round(wall, 1), "files": str(files),
    }
    verdict = figures["completed"] and children == 1 and not incomplete and trained < args.steps * 1.5
    rows = [
        ("round completed", figures["completed"], "yes"),
        ("child checkpoints of the round", children, "1"),
        ("checkpoint/state folders without COMPLETE", len(incomplete), "0"),
        ("leftovers of killed writes (removed by the next run)", len(leftovers), "-"),
        ("steps trained in all / configured", f"{trained} / {args.steps}", "resume, not restart"),
        ("resumed from steps", resumes or "-", "-"),
        ("training worker killed at steps", kill_steps or "-", "-"),
        ("attempts of the training job", figures["attempts"], f"{args.train_kills + 1}"),
        ("SIGKILLs: training / sampling worker", f"{trainer.kills} / {sampler.kills}",
         f"{args.train_kills} / {args.sample_kills}"),
        ("wall time", f"{wall:.0f} s", "-"),
    ]
    width = max(len(name) for name, *_ in rows)
    print(f"{'figure':<{width}}  {'value':<24}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {str(value):<24}  {target}")
    print(f"{'PASS' if verdict else 'FAIL'} (files in {files}; worker logs there)")
    if incomplete:
        print("incomplete: " + ", ".join(incomplete))
    print(json.dumps({**figures, "pass": verdict}))


if __name__ == "__main__":
    main()
