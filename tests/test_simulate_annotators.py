"""Simulated annotators over the real HTTP API (annotate/management/commands/simulate_annotators.py)."""

import io
import logging
import os
import subprocess
import threading

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from annotate import loop, services, tasks
from annotate.demo import demo_url_record
from annotate.images import image_store
from annotate.models import BaseModel, Checkpoint, Judgement, Pair, Prompt, Round, Taste, TrainingJob
from sampler.toy.oracles import judge
from sampler.toy.checkers import read
from sampler.toy.world import Spec, draw
from tests.conftest import REPO, VENV_BIN, free_port
from tests.models import build_tiny_flux

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def grey(level: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (level, level, level)).save(out, format="PNG")
    return out.getvalue()


def brightness(image) -> float:
    with default_storage.open(image.file.name, "rb") as handle:
        return float(np.asarray(Image.open(handle).convert("L")).mean())


def grey_round(slug: str = "sim") -> Round:
    """Six pairs of grey squares, two labels each; the darker image is A or B in turn."""
    taste = services.taste_create(slug=slug)
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=2)
    for index in range(6):
        prompt = Prompt.objects.create(text=f"a grey square {index}")
        levels = (40 + 20 * index, 200 - 10 * index)  # never equal
        a, b = (image_store(prompt=prompt, data=grey(level)) for level in (levels if index % 2 else levels[::-1]))
        Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=a, image_b=b, overlap=2)
    return round_


def toy_png(spec: Spec) -> bytes:
    out = io.BytesIO()
    draw(spec, seed=5)[0].save(out, format="PNG")
    return out.getvalue()


def caption_round(slug: str = "sim") -> Round:
    """Four pairs for "a red circle": a flat red circle against a textured blue square, A and B in turn."""
    taste = services.taste_create(slug=slug)
    round_ = Round.objects.create(taste=taste, number=1, state=Round.State.ANNOTATING, overlap=1)
    prompt = Prompt.objects.create(text="a red circle")
    shown = toy_png(Spec(shape="circle", colour="red", texture="flat"))
    off = toy_png(Spec(shape="square", colour="blue", texture="stripes"))
    for index in range(4):
        a, b = (image_store(prompt=prompt, data=data) for data in ((shown, off) if index % 2 else (off, shown)))
        Pair.objects.create(round=round_, taste=taste, prompt=prompt, image_a=a, image_b=b, overlap=1)
    return round_


def simulators() -> list[str]:
    return list(get_user_model().objects.filter(username__startswith="sim-").values_list("username", flat=True))


def test_dark_oracle_annotators_judge_every_pair_for_the_darker_image(live_server):
    grey_round()
    out = io.StringIO()
    call_command("simulate_annotators", "--taste", "sim", "--oracle", "dark", "--annotators", "2", "--until-idle",
                 "--idle", "1", "--url", live_server.url, stdout=out)
    assert "12 judgements by 2 simulated 'dark' annotators" in out.getvalue()
    for judgement in Judgement.objects.select_related("pair__image_a", "pair__image_b"):
        darker = "a" if brightness(judgement.pair.image_a) < brightness(judgement.pair.image_b) else "b"
        assert judgement.choice == darker


@pytest.mark.parametrize("ignore_prompt", [False, True])
def test_a_tastes_annotators_take_the_image_that_shows_its_caption_and_flag_the_other(live_server, ignore_prompt):
    """The textured annotator prefers the striped blue square on taste alone; minding the prompt, as a person does,
    it takes the red circle the caption asks for and flags the square "doesn't match the prompt"."""
    caption_round()
    call_command("simulate_annotators", "--taste", "sim", "--oracle", "textured", "--annotators", "1", "--until-idle",
                 "--idle", "1", "--url", live_server.url, *(["--ignore-prompt"] if ignore_prompt else []),
                 stdout=io.StringIO())
    judgements = list(Judgement.objects.select_related("pair__image_a"))
    assert len(judgements) == 4
    for judgement in judgements:
        with default_storage.open(judgement.pair.image_a.file.name, "rb") as handle:
            a_is_circle = read(Image.open(handle)).shape == "circle"
        circle, square = ("a", "b") if a_is_circle else ("b", "a")
        assert judgement.choice == (square if ignore_prompt else circle)
        square_flags = judgement.flags_b if a_is_circle else judgement.flags_a
        circle_flags = judgement.flags_a if a_is_circle else judgement.flags_b
        assert circle_flags == [] and square_flags == ([] if ignore_prompt else ["off_prompt"])


def test_without_url_it_judges_at_the_url_the_demo_recorded_and_logs_progress_only(live_server, caplog, tmp_path):
    call_command("seed_demo", "--pairs", "1", "--url", live_server.url, stdout=io.StringIO())
    assert (tmp_path / "demo-url").read_text().strip() == live_server.url  # beside media/, as var/ is in the demo
    grey_round()
    caplog.set_level(logging.INFO)
    out = io.StringIO()
    call_command("simulate_annotators", "--taste", "sim", "--oracle", "dark", "--annotators", "2", "--until-idle",
                 "--idle", "1", stdout=out)
    assert f"judging 'sim' at {live_server.url}/" in out.getvalue()
    assert "12 judgements by 2 simulated 'dark' annotators" in out.getvalue()
    assert Judgement.objects.count() == 12
    assert not [record for record in caplog.records if record.name.startswith(("httpx", "httpcore"))]


def manage(media_root, *args) -> subprocess.CompletedProcess:
    """manage.py in a process of its own, on the test database."""
    from django.db import connection

    db = connection.settings_dict
    env = {**os.environ, "MEDIA_ROOT": str(media_root),
           "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    return subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_when_nothing_answers_it_says_so_in_one_line_before_making_any_user(media_root):
    grey_round()
    dead = f"http://127.0.0.1:{free_port()}/"
    demo_url_record(url=dead)
    result = manage(media_root, "simulate_annotators", "--taste", "sim", "--oracle", "dark", "--until-idle")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"Nothing answers at {dead} (recorded in {media_root.parent / 'demo-url'}" in result.stderr
    assert simulators() == []


def test_with_no_demo_url_it_tries_port_8000_and_says_where_the_url_comes_from(media_root):
    import httpx

    try:
        httpx.get("http://127.0.0.1:8000/", timeout=1)
        pytest.skip("something serves port 8000 on this machine")
    except httpx.HTTPError:
        pass
    grey_round()
    result = manage(media_root, "simulate_annotators", "--taste", "sim", "--oracle", "dark")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "Nothing answers at http://127.0.0.1:8000/ (no demo URL recorded in" in result.stderr
    assert simulators() == []


def test_a_judgement_refused_because_its_round_closed_meanwhile_is_skipped_not_fatal(live_server, monkeypatch):
    """The round is decided while a simulated annotator looks at its pair: the server answers 409 round_closed, and
    the annotator moves on, as the page does (a race the loop's tests met on a slow machine)."""
    import sampler.toy.oracles as oracles

    round_ = grey_round()
    looked = []

    def judge_then_close(*args, **kwargs):
        if not looked:
            Round.objects.filter(pk=round_.pk).update(state=Round.State.DONE)
        looked.append(1)
        return judge(*args, **kwargs)

    monkeypatch.setattr(oracles, "judge", judge_then_close)
    out = io.StringIO()
    call_command("simulate_annotators", "--taste", "sim", "--oracle", "dark", "--annotators", "1", "--until-idle",
                 "--idle", "1", "--url", live_server.url, stdout=out)
    assert looked and Judgement.objects.count() == 0
    refused = len(looked)
    assert out.getvalue().splitlines()[-1] == (
        f"0 judgements by 1 simulated 'dark' annotators (noise 0.0); {refused} refused because their pair's round "
        "closed meanwhile.")


def test_until_decided_needs_a_round_under_way(live_server):
    round_ = grey_round()
    Round.objects.filter(pk=round_.pk).update(state=Round.State.DONE)
    with pytest.raises(CommandError, match="no round under way: its last, round 1, is done"):
        call_command("simulate_annotators", "--taste", "sim", "--oracle", "dark", "--until-decided",
                     "--url", live_server.url)
    assert simulators() == []


def test_until_decided_takes_the_round_under_way_not_an_imported_one_after_it(taste):
    from annotate.management.commands.simulate_annotators import round_under_way
    from tests.conftest import make_round

    running = make_round(taste, pairs=1)
    make_round(taste, pairs=1, state=Round.State.DONE)  # import_preferences makes a round, done at once
    assert round_under_way(taste) == running


class Beat:
    """The demo's beat (advance_rounds every half second) in a thread, for the test's worker runs none."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from django.db import connection

        while not self.stopped.wait(0.5):
            tasks.advance_rounds()
        connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(timeout=30)


def test_until_decided_ends_in_one_line_when_the_round_fails_or_time_runs_out(live_server):
    round_ = grey_round()
    Round.objects.filter(pk=round_.pk).update(state=Round.State.TRAINING)
    command = ["simulate_annotators", "--taste", "sim", "--oracle", "dark", "--until-decided", "--poll", "0.2",
               "--url", live_server.url]
    with pytest.raises(CommandError, match=r"^Round 1 has no decision after 1 s: round 1 training: the training job "
                                           r"is being queued\.$"):
        call_command(*command, "--timeout", "1", stdout=io.StringIO())

    TrainingJob.objects.create(round=round_, config={}, steps=3, state=TrainingJob.State.FAILED,
                               error="CUDA out of memory\n  while training step 2")
    out = io.StringIO()
    with Beat(), pytest.raises(CommandError) as refused:
        call_command(*command, "--timeout", "60", stdout=out)
    assert str(refused.value) == ("Round 1 ended failed without a decision: Training failed: CUDA out of memory "
                                  "while training step 2")
    assert "round 1 failed in training: Training failed: CUDA out of memory while training step 2" in out.getvalue()


def test_make_demo_records_the_url_of_the_port_it_serves():
    recipe = subprocess.run(["make", "-n", "demo", "PORT=8123"], cwd=REPO, capture_output=True, text=True, timeout=60,
                            check=True).stdout
    assert "manage.py seed_demo --url http://127.0.0.1:8123/" in recipe
    assert "manage.py runserver 127.0.0.1:8123" in recipe


@pytest.fixture(scope="module")
def tiny_flux_dir(tmp_path_factory):
    return build_tiny_flux(tmp_path_factory.mktemp("simulate") / "flux")


def test_until_decided_judges_a_round_through_training_and_evaluation_to_its_decision(
    celery_worker_process, live_server, tiny_flux_dir
):
    from tests.test_loop import new_round

    taste = services.taste_create(slug="decide")
    base = BaseModel.objects.create(name="tiny-decide", kind="flux", path=str(tiny_flux_dir), default_steps=2,
                                    default_width=64, default_height=64, default_max_sequence_length=32)
    root = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    Taste.objects.filter(pk=taste.pk).update(current_checkpoint=root)
    round_ = new_round(taste)
    assert loop.round_start(round_id=round_.pk)
    out = io.StringIO()
    with Beat():
        # At random: the tiny model's images differ in brightness by less than the dark oracle notices.
        call_command("simulate_annotators", "--taste", "decide", "--oracle", "random", "--annotators", "1",
                     "--until-decided", "--poll", "0.5", "--timeout", "300", "--url", live_server.url, stdout=out)
    round_.refresh_from_db()
    assert round_.state == Round.State.DONE and round_.decision
    lines = out.getvalue().splitlines()
    states = [line.split(":")[0].split()[2] for line in lines if line.startswith("round 1 ")]
    assert "training" in states and states[-1] == "done"
    verdict = "promoted" if round_.decision["promote"] else "rejected"
    assert lines[-2].startswith(f"round 1 done: {verdict}: win rate")
    judged = Judgement.objects.filter(pair__round=round_).count()
    assert lines[-1].startswith(f"{judged} judgements by 1 simulated 'random' annotators (noise 0.0)")
    assert Judgement.objects.filter(pair__round=round_, pair__kind="eval").count() == 4  # the eval pairs, judged


def test_oracles_with_noise_and_the_random_control():
    import random

    dark, light = Image.new("RGB", (8, 8), (10, 10, 10)), Image.new("RGB", (8, 8), (200, 200, 200))
    rng = random.Random(0)
    assert judge("dark", dark, light, rng=rng) == "left" and judge("dark", light, dark, rng=rng) == "right"
    assert judge("dark", dark, dark, rng=rng) == "tie"
    noisy = [judge("dark", dark, light, noise=0.5, rng=rng) for _ in range(400)]
    assert 0.65 < noisy.count("left") / 400 < 0.85  # half the answers are coins: ~75% right
    control = [judge("random", dark, light, rng=rng) for _ in range(400)]
    assert 0.4 < control.count("left") / 400 < 0.6
    with pytest.raises(ValueError, match="Unknown oracle"):
        judge("pretty", dark, light, rng=rng)


def test_minding_the_prompt_decides_only_between_an_image_that_shows_its_caption_and_one_that_does_not():
    import random

    from sampler.toy.oracles import flags, shows_caption

    rng = random.Random(0)
    circle = draw(Spec(shape="circle", colour="red", texture="flat"), seed=5)[0]
    striped = draw(Spec(shape="circle", colour="red", texture="stripes"), seed=5)[0]
    square = draw(Spec(shape="square", colour="red", texture="stripes"), seed=5)[0]
    prompt = "a red circle"
    assert judge("textured", circle, square, rng=rng) == "right"  # the taste alone takes the stripes
    assert judge("textured", circle, square, rng=rng, prompt=prompt) == "left"
    assert judge("textured", square, circle, rng=rng, prompt=prompt) == "right"
    assert judge("textured", circle, striped, rng=rng, prompt=prompt) == "right"  # both show it: the taste decides
    assert judge("textured", circle, square, rng=rng, prompt="a grey square 1") == "right"  # not a toy caption
    assert shows_caption(circle, "a grey square 1") is None and flags("textured", circle, "a grey square 1") == []
    assert flags("textured", square, prompt) == ["off_prompt"] and flags("textured", striped, prompt) == []
    assert flags("random", square, prompt) == [] and flags("textured", square, None) == []
    # The control stays a coin: the prompt changes nothing for the random annotator.
    coins = [judge("random", circle, square, rng=rng, prompt=prompt) for _ in range(400)]
    assert 0.4 < coins.count("left") / 400 < 0.6
