"""The README's walk-through as a newcomer takes it, in real Chromium against the demo on SQLite.

Seed the demo, judge as alice, let simulated annotators finish round 1 (through training and evaluation), launch
round 2 from the admin's form with its model fields left blank, watch it decide, and export the preferences.
"""

import json
import os
import sqlite3
import subprocess

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from sampler.toy.defaults import TRAINING
from tests.conftest import REPO, VENV_BIN, free_port, stop, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def demo(tmp_path):
    """The demo's processes as `make demo` starts them (runserver, a worker with beat), on SQLite and Celery's
    file-system transport, in a folder of their own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_", "DJANGO_"))}
    env.update(
        CHISEL_ENV_FILE="/dev/null", SECRET_KEY="newcomer-secret-key-that-is-only-for-this-test-0123456789",
        DEBUG="true", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", CELERY_BROKER_URL="filesystem://",
        CELERY_FS_DIR=str(tmp_path / "celery"), MEDIA_ROOT=str(tmp_path / "var" / "media"),
        STATIC_ROOT=str(tmp_path / "static"), CHISEL_EXPORT_ROOT=str(tmp_path / "var" / "exports"),
        CHISEL_CHECKPOINT_ROOT=str(tmp_path / "var" / "checkpoints"), SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false", CHISEL_REFILL_SECONDS="2",
    )
    port = free_port()
    env["PORT"] = str(port)
    manage(env, "migrate", "--noinput", "-v0")
    # The README's demo, smaller: 4 pairs and 6 eval pairs a round, 10 training steps, so the walk takes minutes.
    manage(env, "seed_demo", "--pairs", "4", "--eval-pairs", "6", "--train-steps", "10", "--url", f"http://127.0.0.1:{port}/")
    log = (tmp_path / "demo.log").open("w")
    processes = [
        subprocess.Popen([str(VENV_BIN / "python"), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                         cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT),
        subprocess.Popen([str(VENV_BIN / "celery"), "-A", "chisel", "worker", "--beat", "--pool", "solo",
                          "-Q", "celery,sample,train", "--schedule", str(tmp_path / "beat-schedule"),
                          "--loglevel", "WARNING"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT),
    ]
    try:
        wait_until(lambda: _answers(port), timeout=60, what="the demo server")
        yield {"env": env, "url": f"http://127.0.0.1:{port}", "tmp": tmp_path,
               "logins": json.loads((tmp_path / "var" / "demo-logins.json").read_text())}
    finally:
        for process in processes:
            stop(process)
        log.close()
        print((tmp_path / "demo.log").read_text()[-6000:])


def manage(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _answers(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/login/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def log_in(browser, url: str, username: str, password: str) -> Page:
    # bypass_csp: Playwright's string waits are evals, which the site's policy (rightly) forbids.
    page = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url, bypass_csp=True).new_page()
    page.set_default_timeout(30000)
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    return page


def round_row(demo, number: int) -> dict:
    with sqlite3.connect(demo["tmp"] / "db.sqlite3") as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT r.* FROM annotate_round r JOIN annotate_taste t ON t.id = r.taste_id "
                         "WHERE t.slug = 'demo' AND r.number = ?", [number]).fetchone()
    return dict(row) if row else {}


def simulate_until_decided(demo) -> str:
    """The README's step 1, as written there (no --url: the command finds the demo's), until the round decides."""
    result = manage(demo["env"], "simulate_annotators", "--taste", "demo", "--oracle", "textured", "--annotators",
                    "2", "--noise", "0.1", "--until-decided", "--timeout", "900", timeout=960)
    assert "Traceback" not in result.stderr and "HTTP Request" not in result.stderr + result.stdout
    return result.stdout


def decision(demo, number: int) -> dict:
    return json.loads(round_row(demo, number)["decision"] or "{}")


def test_a_newcomer_walks_the_readme_on_the_demo(demo, browser):
    url, logins = demo["url"], demo["logins"]

    # Judge: alice logs in, lands on the demo's judging page and judges two pairs by keyboard.
    alice = log_in(browser, url, "alice", logins["alice"])
    alice.wait_for_url("**/annotate/demo/")
    # The demo taste's written guidelines open on the first visit.
    expect(alice.locator("#guidelines")).to_contain_text("texture")
    alice.click("#guidelines-close")
    alice.wait_for_function("document.getElementById('stage').dataset.assignment !== undefined", timeout=240000)
    for key in ("1", "2"):
        shown = alice.get_attribute("#stage", "data-assignment")
        alice.keyboard.press(key)
        alice.wait_for_function(f"document.getElementById('stage').dataset.assignment !== '{shown}'"
                                " || !document.getElementById('empty').hidden", timeout=60000)
    expect(alice.locator("#pending")).to_be_hidden(timeout=30000)
    # She logs out: the pairs her page held ahead go back to the pool (else the round waits for their leases).
    alice.click("#logout button")
    alice.wait_for_url("**/login/")
    alice.context.close()

    # Finish round 1 with simulated annotators: it trains, evaluates and decides.
    out = simulate_until_decided(demo)
    assert "round 1 done" in out, out
    assert round_row(demo, 1)["state"] == "done"
    assert "promote" in decision(demo, 1)

    # Launch round 2 from the admin's form, the model fields blank, with the README's tags.
    lead = log_in(browser, url, "lead", logins["lead"])
    lead.goto("/admin/annotate/round/add/?taste=demo")
    lead.fill("input[name=prompt_tags]", "toy")
    for name in ("steps", "guidance", "size", "beta", "learning_rate", "rank"):
        lead.fill(f"input[name={name}]", "")
    lead.select_option("select[name=reference]", "")
    for name, value in {"pair_quota": "4", "label_quota": "8", "eval_pair_quota": "6", "train_steps": "10"}.items():
        lead.fill(f"input[name={name}]", value)
    lead.click("#launch-round [type=submit]")
    lead.wait_for_url("**/admin/annotate/round/*/change/")
    second = round_row(demo, 2)
    training, sampling = json.loads(second["training_config"]), json.loads(second["sampling_config"])
    with sqlite3.connect(demo["tmp"] / "db.sqlite3") as db:
        kind = db.execute("SELECT kind FROM annotate_basemodel WHERE name = 'toy-flux'").fetchone()[0]
    # Blank model fields fell back to the toy model's own defaults, not the FLUX family's (1024 px, lr 1e-4).
    for key in ("learning_rate", "beta", "rank", "reference"):
        assert training[key] == TRAINING[kind][key], (key, training)
    assert (sampling["width"], sampling["height"]) == (64, 64), sampling

    # Watch it decide on the cockpit.
    out = simulate_until_decided(demo)
    assert "round 2 done" in out, out
    try:
        lead.reload()
    except PlaywrightError:  # the cockpit reloaded itself on the round's state change at the same moment
        lead.wait_for_load_state()
    expect(lead.locator("#cockpit")).to_contain_text("Promoted" if decision(demo, 2)["promote"] else "Rejected")
    expect(lead.locator("#cockpit h2")).to_contain_text("done")

    # Export beside a README.md of one's own: it survives, the card is named after the export.
    out_dir = demo["tmp"] / "exports"
    out_dir.mkdir()
    (out_dir / "README.md").write_text("mine")
    manage(demo["env"], "export_preferences", "--out", str(out_dir / "demo.parquet"), "--taste", "demo")
    assert (out_dir / "README.md").read_text() == "mine"
    assert (out_dir / "demo.parquet").stat().st_size > 0 and (out_dir / "demo.parquet.README.md").exists()
