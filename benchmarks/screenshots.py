"""Screenshots of every page of `magister view`, for the README and for looking at the app as a person would.

Fills a fresh store with real runs (the first 60 TREC test questions with mock:first and mock:random, and the
embedded SmolLM2 on the demo exam), labels a few answers, serves the app on 127.0.0.1 and photographs each page
with Playwright driving Debian's chromium (`apt-get install chromium`).

    python benchmarks/screenshots.py [--out docs/img] [--teach RUN_DIR]

`--teach` adds a teaching run folder (written by `magister teach`) so its page is photographed too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TREC = ROOT.parent.parent / "shared" / "data" / "trec" / "test.jsonl"


def magister(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "magister.cli", *args, "--json"], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT.parent / "docs" / "img"))
    parser.add_argument("--teach", type=Path, help="a teaching run folder to show as well")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("needs Debian's chromium: apt-get install chromium")
    os.environ["MAGISTER_HOME"] = tempfile.mkdtemp(prefix="magister-shots-")
    exam = Path(os.environ["MAGISTER_HOME"]) / "trec60.jsonl"
    exam.write_text("".join(TREC.read_text(encoding="utf-8").splitlines(keepends=True)[:60]), encoding="utf-8")
    first = magister("exam", str(exam), "--model", "mock:first")["run_id"]
    guess = magister("exam", str(exam), "--model", "mock:random")["run_id"]
    demo = magister("demo")["run_id"]

    import uvicorn
    from playwright.sync_api import sync_playwright

    from magister.store import Store
    from magister.web.app import create_app

    store = Store()
    answered = [a.item_id for a, _ in store.answers(demo)]
    for item, right in zip(answered[::6], (True, False, True, True, False, True, True, False)):
        store.put_label(demo, item, right, "screenshots")
    if args.teach:
        store.put_teach_run(args.teach.resolve().name, args.teach)
    store.close()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(who="screenshots"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    pages = {"runs": "/", "run": f"/runs/{demo}", "item": f"/runs/{demo}/items/{answered[0]}",
             "compare": f"/compare/{first}/{guess}", "leaderboard": "/leaderboard/trec60",
             "label": f"/label/{demo}?sample=12"}
    if args.teach:
        pages["teach"] = f"/teach/{args.teach.resolve().name}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 860})
        for name, path in pages.items():
            tab.goto(base + path)
            tab.screenshot(path=str(out / f"view-{name}.png"))
            print(f"wrote {out / f'view-{name}.png'}")
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
