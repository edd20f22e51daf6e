"""Key press to next pair painted on the judging page, over 100 judgements in headless Chromium."""

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEYS = ["1", "2", "ArrowLeft", "ArrowRight", "3", "0"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--judgements", type=int, default=100)
    parser.add_argument("--think", type=float, default=0.5, help="seconds between a pair appearing and the key press")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--screenshot", type=Path, help="also save a screenshot of the page here")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="chisel-ui-bench-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_"))},
        "CHISEL_ENV_FILE": "/dev/null", "SECRET_KEY": secrets.token_urlsafe(50), "DEBUG": "false",
        "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}", "MEDIA_ROOT": str(work / "media"),
        "STATIC_ROOT": str(work / "static"), "CELERY_FS_DIR": str(work / "celery"),
        "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING",
    }
    manage = [str(BIN / "python"), "manage.py"]
    print("Seeding a demo world…", file=sys.stderr)
    for command in (["migrate", "-v0"], ["collectstatic", "--noinput", "-v0"],
                    ["seed_demo", "--pairs", str(args.judgements + 10)]):
        subprocess.run(manage + command, cwd=REPO, env=env, check=True, capture_output=True)
    password = json.loads((work / "demo-logins.json").read_text())["alice"]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "chisel.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/login/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            # bypass_csp: wait_for_function evaluates strings, which the page's Content-Security-Policy forbids.
            page = browser.new_page(viewport={"width": args.width, "height": args.height}, base_url=base,
                                    bypass_csp=True)
            page.goto("/login/")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url("**/annotate/demo/")
            page.wait_for_function("document.getElementById('stage').dataset.assignment !== undefined")
            if args.screenshot:
                page.keyboard.press("w")  # show a flagged chip in the picture
                page.mouse.move(args.width * 0.3, args.height * 0.5)
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.screenshot))
                page.keyboard.press("w")
            for index in range(args.judgements):
                before = page.get_attribute("#stage", "data-assignment")
                time.sleep(args.think)
                page.keyboard.press(KEYS[index % len(KEYS)])
                page.wait_for_function(
                    f"(d => d !== undefined && d !== '{before}')(document.getElementById('stage').dataset.assignment)"
                )
                print(f"\r{index + 1}/{args.judgements}", end="", file=sys.stderr)
            page.wait_for_function("window.chiselMetrics.latencies.length >= %d" % args.judgements)
            latencies = page.evaluate("window.chiselMetrics.latencies")[-args.judgements:]
            page.wait_for_selector("#pending", state="hidden")
            browser.close()
    finally:
        server.terminate()
        server.wait()
    print(file=sys.stderr)

    figures = {
        "judgements": len(latencies),
        "viewport": f"{args.width}x{args.height}",
        "think_s": args.think,
        "median_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "max_ms": round(max(latencies), 1),
    }
    print("Key press → next pair painted (measured in the page: keydown to two animation frames after the swap)")
    for name, value in figures.items():
        print(f"  {name:<24} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
