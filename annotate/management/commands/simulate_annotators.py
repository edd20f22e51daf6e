"""manage.py simulate_annotators --taste SLUG --oracle NAME [--until-idle | --until-decided] [--url URL]"""

import io
import logging
import random
import threading
import time
import uuid

import httpx
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError
from PIL import Image
from rest_framework.authtoken.models import Token

from annotate import loop, services
from annotate.demo import demo_file, demo_url
from annotate.models import Round, Taste

FALLBACK_URL = "http://127.0.0.1:8000/"
FINAL = (Round.State.DONE, Round.State.FAILED, Round.State.CANCELLED)
UNDER_WAY = (Round.State.SAMPLING, Round.State.ANNOTATING, Round.State.TRAINING, Round.State.EVALUATING)
REPORT_EVERY = 10.0  # seconds between two progress lines when nothing but counts changed
MAX_WAIT = 3.0  # the longest pause between two asks for pairs when none is left
RECONNECT_FOR = 15.0  # how long a server that stops answering (a restart) is waited for
# Refusals that mean "this pair went away while you looked at it": the page moves on, and so does a simulated annotator.
GONE = {"round_closed", "lease_expired", "assignment_closed"}


class Command(BaseCommand):
    help = "Simulated annotators judging through the real HTTP API with tokens, by a toy-world oracle."

    def add_arguments(self, parser):
        from sampler.toy.oracles import ORACLES

        parser.add_argument("--taste", required=True)
        parser.add_argument("--oracle", required=True, choices=ORACLES)
        parser.add_argument("--annotators", type=int, default=2)
        parser.add_argument("--noise", type=float, default=0.0, help="share of answers left to a coin")
        until = parser.add_mutually_exclusive_group()
        until.add_argument("--until-idle", action="store_true", help="stop once no pair has come for --idle seconds")
        until.add_argument("--until-decided", action="store_true",
                           help="judge until the taste's round under way is decided (promoted, rejected, failed or "
                                "cancelled), through its training and evaluation")
        parser.add_argument("--idle", type=float, default=10.0)
        parser.add_argument("--timeout", type=float, default=3600.0,
                            help="with --until-decided: give up (exit 1) after this many seconds")
        parser.add_argument("--poll", type=float, default=2.0, help="seconds between two looks at the round")
        parser.add_argument("--url", help="the running Chisel server (default: the URL `make demo` recorded in "
                                          f"var/demo-url, else {FALLBACK_URL})")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--duration-ms", type=int, default=2500,
                            help="the time to answer each judgement reports (under the taste's speed floor: too fast)")
        parser.add_argument("--ignore-prompt", action="store_true",
                            help="judge by the taste alone: no preference for the image that shows its caption, and "
                                 "no \"doesn't match the prompt\" flags (the annotators of before session 19)")

    def handle(self, *args, taste, oracle, annotators, noise, until_idle, until_decided, idle, timeout, poll, url,
               seed, duration_ms=2500, ignore_prompt=False, **options):
        taste_row = Taste.objects.filter(slug=taste).first()
        if taste_row is None:
            raise CommandError(f"There is no taste '{taste}'.")
        if not 0 <= noise <= 1:
            raise CommandError("--noise is a share between 0 and 1.")
        if annotators < 1:
            raise CommandError("--annotators is at least 1.")
        round_ = round_under_way(taste_row) if until_decided else None
        quiet = _quiet_http_logs()
        team = Team(url="", taste=taste, oracle=oracle, noise=noise, until_idle=until_idle, idle=idle)
        team.duration_ms = max(0, duration_ms)
        team.mind_prompt = not ignore_prompt
        try:
            team.url = server_check(url)  # before any user is made: nothing is left behind when no server answers
            tokens = [self.annotator_token(taste_row, f"sim-{oracle}-{index}") for index in range(annotators)]
            target = (f"until round {round_.number} is decided" if round_ else
                      "until idle" if until_idle else "until stopped")
            self.stdout.write(f"{annotators} simulated '{oracle}' annotators (noise {noise}) judging '{taste}' at "
                              f"{team.url}, {target}.")
            team.start(tokens, seed=seed)
            progress = self.watch(team, round_, poll=poll, timeout=timeout)
        except KeyboardInterrupt:
            progress = None
        finally:
            team.stop()
            quiet.undo()
        if team.errors:
            raise CommandError(team.errors[0])
        refused = f"; {team.refused} refused because their pair's round closed meanwhile" if team.refused else ""
        self.stdout.write(f"{team.judged} judgements by {annotators} simulated '{oracle}' annotators "
                          f"(noise {noise}){refused}.")
        if round_ is not None and progress is not None:
            self.outcome(round_, progress, timeout)

    def watch(self, team: "Team", round_: Round | None, *, poll: float, timeout: float) -> dict | None:
        """Until the round is decided (or the team is idle, without a round): a line when the round changes step,
        and one every REPORT_EVERY seconds while only its counts move."""
        deadline = time.monotonic() + timeout
        last_line, last_state, last_time = None, None, 0.0
        while True:
            if round_ is not None:
                try:
                    progress = loop.round_progress(round_id=round_.pk)
                except OperationalError:  # SQLite busy with a writer: look again at the next poll
                    team.stopped.wait(poll)
                    continue
                state, line = progress["state"], round_line(round_.number, progress, team.judged)
            else:
                progress, state, line = None, None, f"{team.judged} judgements so far"
            now = time.monotonic()
            if line != last_line and (state != last_state or now - last_time >= REPORT_EVERY):
                self.stdout.write(line)
                last_line, last_state, last_time = line, state, now
            if team.errors or (round_ is None and not team.alive()):
                return progress
            if round_ is not None and (state in FINAL or now > deadline):
                return progress
            team.stopped.wait(poll)

    def outcome(self, round_: Round, progress: dict, timeout: float) -> None:
        state = progress["state"]
        if state == Round.State.DONE:
            return
        if state in FINAL:
            raise CommandError(f"Round {round_.number} ended {state} without a decision: "
                               f"{one_line(progress['error']) or '-'}")
        raise CommandError(f"Round {round_.number} has no decision after {timeout:.0f} s: "
                           f"{round_line(round_.number, progress, None)}.")

    def annotator_token(self, taste: Taste, username: str) -> str:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            return services.annotator_create(username=username, tastes=[taste])[1]
        services.annotator_join(annotator=user, taste=taste)
        return Token.objects.get_or_create(user=user)[0].key


def round_under_way(taste: Taste) -> Round:
    """The taste's newest round that is sampling, annotating, training or evaluating (an import's round, done at
    once, may be numbered after it); else a refusal naming the latest round's state."""
    round_ = taste.rounds.filter(state__in=UNDER_WAY).order_by("-number").first() or \
        taste.rounds.order_by("-number").first()
    if round_ is None:
        raise CommandError(f"Taste '{taste.slug}' has no round to decide: launch one (manage.py launch_round).")
    if round_.state not in UNDER_WAY:
        raise CommandError(f"Taste '{taste.slug}' has no round under way: its last, round {round_.number}, is "
                           f"{round_.state} (start or launch one from the admin).")
    return round_


def server_check(url: str | None) -> str:
    """The server's URL: --url, else the one the demo recorded, else port 8000; refuses when no Chisel answers."""
    where = ""
    if not url:
        url = demo_url()
        where = f" (recorded in {demo_file('demo-url')} by `make demo`)" if url else \
            f" (no demo URL recorded in {demo_file('demo-url')}: `make demo` writes it)"
        url = url or FALLBACK_URL
    url = url.rstrip("/") + "/"
    try:
        response = httpx.get(f"{url}login/", timeout=5)
    except httpx.HTTPError as exc:
        raise CommandError(f"Nothing answers at {url}{where}: start the server (make demo) or pass --url "
                           f"({type(exc).__name__}).") from None
    if response.status_code != 200:
        raise CommandError(f"{url}{where} answers, but not as a Chisel server (GET /login/ gave "
                           f"{response.status_code}): pass --url.")
    return url


def round_line(number: int, progress: dict, judged: int | None) -> str:
    """One line on where the round stands, e.g. `round 1 training: step 40/300`."""
    state = progress["state"]
    sampling, annotation = progress["sampling"], progress["annotation"]
    training, evaluation = progress["training"], progress["evaluation"]
    if state in (Round.State.SAMPLING, Round.State.ANNOTATING):
        detail = (f"{annotation['done']}/{annotation['total']} labels, "
                  f"{sampling['done']}/{sampling['total']} pairs sampled")
    elif state == Round.State.TRAINING:
        detail = f"step {training['done']}/{training['total']}" if training["state"] == "running" else \
            f"the training job is {training['state'] or 'being queued'}"
    elif state == Round.State.EVALUATING:
        detail = f"{evaluation['done']}/{evaluation['total']} eval labels, {evaluation['pairs']} eval pairs sampled"
        if (base := progress.get("base") or {}).get("total"):
            detail += f", {base['done']}/{base['total']} child-vs-base labels"
    elif state == Round.State.DONE:
        decision = progress["decision"] or {}
        win = decision.get("win") or {}
        detail = "promoted" if decision.get("promote") else "rejected"
        if win.get("n"):
            detail += f": win rate {win['rate']:.2f} [{win['low']:.2f}, {win['high']:.2f}] over {win['n']} eval labels"
        cumulative = decision.get("cumulative") or {}
        if cumulative.get("source") == "base" and (measured := cumulative["win"]).get("n"):
            detail += (f"; against the base {measured['rate']:.2f} [{measured['low']:.2f}, {measured['high']:.2f}] "
                       f"over {measured['n']} labels")
    elif state == Round.State.FAILED:
        state, detail = f"failed in {progress['failed_in'] or '?'}", one_line(progress["error"])
    else:
        detail = one_line(progress["error"]) or state
    line = f"round {number} {state}{' (paused)' if progress['paused'] else ''}: {detail}"
    return line if judged is None else f"{line} · {judged} judged here"


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _quiet_http_logs:
    """httpx logs every request at INFO: keep the command's output to its progress lines."""

    def __init__(self) -> None:
        self.levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
        for name in self.levels:
            logging.getLogger(name).setLevel(logging.WARNING)

    def undo(self) -> None:
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


class Team:
    """One thread per simulated annotator, each judging over HTTP with its own token until stopped."""

    def __init__(self, *, url: str, taste: str, oracle: str, noise: float, until_idle: bool, idle: float) -> None:
        self.url, self.taste, self.oracle, self.noise = url, taste, oracle, noise
        self.until_idle, self.idle = until_idle, idle
        self.duration_ms = 2500
        self.mind_prompt = True  # a taste's annotator takes the image that shows its caption, and flags the other
        self.stopped = threading.Event()
        self.counts: list[int] = []
        self.errors: list[str] = []
        self.refused = 0  # judgements the server refused because their pair went away meanwhile
        self.threads: list[threading.Thread] = []

    @property
    def judged(self) -> int:
        return sum(self.counts)

    def start(self, tokens: list[str], *, seed: int) -> None:
        self.counts = [0] * len(tokens)
        self.threads = [threading.Thread(target=self.run, args=(token, random.Random(seed + i), i), daemon=True)
                        for i, token in enumerate(tokens)]
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def run(self, token: str, rng: random.Random, index: int) -> None:
        client = httpx.Client(base_url=self.url, headers={"Authorization": f"Token {token}"}, timeout=30)
        try:
            self.judge(client, rng, index)
        except httpx.HTTPError as exc:
            if not self.stopped.is_set():
                self.errors.append(describe(exc, self.url))
                self.stopped.set()
        finally:
            client.close()

    def judge(self, client: httpx.Client, rng: random.Random, index: int) -> None:
        from sampler.toy.oracles import flags, judge

        quiet_since, wait = time.monotonic(), 0.25
        while not self.stopped.is_set():
            response = self.call(client, "GET", "/api/v1/assignments/next/",
                                 params={"taste": self.taste, "prefetch": 1})
            if response.status_code == 204:
                if self.until_idle and time.monotonic() - quiet_since > self.idle:
                    return
                self.stopped.wait(wait)
                wait = min(wait * 1.5, MAX_WAIT)
                continue
            quiet_since, wait = time.monotonic(), 0.25
            for item in response.json():
                left, right = (Image.open(io.BytesIO(self.call(client, "GET", item[side]["url"]).content))
                               for side in ("left", "right"))
                prompt = item["prompt"] if self.mind_prompt else None
                choice = judge(self.oracle, left, right, noise=self.noise, rng=rng, prompt=prompt)
                response = self.call(client, "POST", "/api/v1/judgements/", gone_ok=True, json={
                    "assignment": item["id"], "choice": choice, "client_uuid": str(uuid.uuid4()),
                    "duration_ms": self.duration_ms, "flags_left": flags(self.oracle, left, prompt),
                    "flags_right": flags(self.oracle, right, prompt),
                })
                if response.is_success:
                    self.counts[index] += 1
                else:
                    self.refused += 1

    def call(self, client: httpx.Client, method: str, path: str, *, gone_ok: bool = False, **kwargs) -> httpx.Response:
        """One request; a server that stops answering (runserver reloading) is waited for a little. With `gone_ok`, a
        409 saying the pair went away (its round closed, its lease ran out) is answered, not raised."""
        deadline = time.monotonic() + RECONNECT_FOR
        while True:
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TransportError:
                if time.monotonic() > deadline or self.stopped.is_set():
                    raise
                time.sleep(1)
                continue
            if gone_ok and response.status_code == 409 and error_code(response) in GONE:
                return response
            response.raise_for_status()
            return response


def error_code(response: httpx.Response) -> str | None:
    try:
        return response.json().get("code")
    except ValueError:
        return None


def describe(exc: httpx.HTTPError, url: str) -> str:
    """One line for a failed request."""
    if isinstance(exc, httpx.HTTPStatusError):
        request, response = exc.request, exc.response
        body = one_line(response.text, 200)
        hint = " (is the server at that URL using this command's database?)" if response.status_code == 401 else ""
        return f"{request.method} {request.url.path} answered {response.status_code}: {body}{hint}"
    return f"The server at {url} stopped answering: {type(exc).__name__}: {one_line(str(exc))}"
