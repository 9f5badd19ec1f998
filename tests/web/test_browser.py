"""`magister view` in a real browser: Playwright driving Debian's chromium against the app served by
uvicorn on 127.0.0.1, over a store filled by real `magister` runs (mock and embedded models)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from magister.cli import app

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")]
XSS = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
runner = CliRunner()


def wait_until(condition, timeout: float = 15.0) -> None:  # noqa: ANN001
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "the page did not get there in time"
        time.sleep(0.1)


def magister(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def runs(tmp_path: Path, magister_home: Path) -> dict[str, str]:
    labels = ["negative", "positive"]
    exam = tmp_path / "skewed.jsonl"
    exam.write_text("".join(json.dumps({"id": f"s{i}", "text": f"text {i}", "label": labels[int(i >= 25)]}) + "\n"
                            for i in range(30)))
    free = tmp_path / "free.jsonl"
    free.write_text(json.dumps({"id": "x1", "question": f"Capital of France? {XSS}", "answer": "Paris"}) + "\n")
    return {"first": magister("exam", str(exam), "--model", "mock:first")["run_id"],
            "last": magister("exam", str(exam), "--model", "mock:last")["run_id"],
            "xss": magister("exam", str(free), "--model", f"mock:text={XSS}")["run_id"]}


@pytest.fixture
def server(magister_home: Path) -> Iterator[str]:
    import uvicorn

    from magister.web.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = uvicorn.Server(uvicorn.Config(create_app(who="tester"), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not served.started and time.time() < deadline:
        time.sleep(0.05)
    assert served.started, "the app did not start"
    yield f"http://127.0.0.1:{port}"
    served.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(server: str) -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.set_default_timeout(15_000)
        yield tab
        browser.close()
        assert not errors, errors


def test_click_through_runs_run_item_and_compare(page, server: str, runs: dict[str, str]) -> None:  # noqa: ANN001
    page.goto(server + "/")
    assert page.locator("#runs tbody tr").count() == 3
    page.click(f"a[href='/runs/{runs['first']}']")
    assert "83.3%" in page.inner_text("#accuracy")
    page.check("input[name=wrong]")
    page.click("#item-filters button")
    assert page.locator("#items tbody tr").count() == 5  # the 'positive' items mock:first got wrong
    page.click("#items tbody tr:first-child td:nth-child(3)")  # a click anywhere on the row opens the item
    assert page.inner_text("#reference") == "positive" and "s25" in page.url
    assert "text 25" in page.inner_text("#request")
    page.goto(server + "/")
    page.check(f"input[value='{runs['first']}']")
    page.check(f"input[value='{runs['last']}']")
    page.click("#compare-button")
    page.wait_for_url("**/compare/**")
    table = page.inner_text("#comparison")
    assert "mock:last" in table.splitlines()[0]  # the runs page lists newest first: A is the later run
    assert "5 only A right" in table and "25 only B right" in table
    assert page.locator("#pairs tr.discordant").count() == 30


def test_label_five_answers_with_the_keyboard_and_see_the_agreement(page, server: str,  # noqa: ANN001
                                                                   runs: dict[str, str]) -> None:
    page.goto(f"{server}/label/{runs['first']}?sample=10")
    cards = page.locator("#label-app .card")
    assert cards.count() == 10
    shown = [cards.nth(k).get_attribute("data-item") for k in range(5)]
    for key in ("y", "y", "n", "y", "y"):
        page.keyboard.press(key)
        page.wait_for_timeout(150)
    page.keyboard.press("u")  # undo the fifth ...
    page.wait_for_timeout(300)
    page.keyboard.press("n")  # ... and label it wrong instead
    wait_until(lambda: page.inner_text("#labelled") == "5")  # polled from Python: the page's CSP forbids eval
    wait_until(lambda: "On 5 labelled" in page.inner_text("#agreement"))
    from magister.store import Store

    store = Store()
    labels = {item: ok for item, who, ok, _ in store.labels(runs["first"])}
    store.close()
    assert list(labels) == shown[:5] or set(labels) == set(shown[:5])
    assert [labels[i] for i in shown] == [True, True, False, True, False]
    grader = {i: int(i[1:]) < 25 for i in shown}  # mock:first is right on s0-s24
    agree = sum(labels[i] == grader[i] for i in shown)
    assert f"agreement {agree / 5:.1%}" in page.inner_text("#agreement")


def test_model_output_never_runs_as_script(page, server: str, runs: dict[str, str]) -> None:  # noqa: ANN001
    for path in ("/", f"/runs/{runs['xss']}", f"/runs/{runs['xss']}/items/x1", f"/label/{runs['xss']}"):
        page.goto(server + path)
        assert page.evaluate("window.pwned === undefined"), path
    page.goto(f"{server}/runs/{runs['xss']}/items/x1")
    assert "<script>window.pwned = 1</script>" in page.inner_text("#answer")  # shown as text


@pytest.mark.llamacpp
def test_an_embedded_model_run_shows_choice_probabilities(page, server: str) -> None:  # noqa: ANN001
    run = magister("demo")["run_id"]
    page.goto(f"{server}/runs/{run}")
    assert page.locator("table.confusion").count() == 1
    page.click("#items tbody tr:first-child a")
    bars = page.locator("#choices tr")
    assert bars.count() == 2  # positive / negative, with their log-probabilities drawn as bars
