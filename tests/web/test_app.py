"""`magister view` over a store filled by real runs (mock models): every page, its JSON and tables,
escaping of model output, the token guard, labels, and paging on a big run."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from magister.models.base import load_model  # noqa: E402
from magister.sit import sit  # noqa: E402
from magister.store import Store  # noqa: E402
from magister.types import Answer, Completion, Exam, Grade, Item, Kind, Request  # noqa: E402
from magister.web.app import create_app  # noqa: E402
from postgres import on_both_backends, sqlite_only  # noqa: E402

pytestmark = on_both_backends  # the app reads through Store methods: `magister view` over SQLite or PostgreSQL

XSS = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


def skewed_exam(n: int = 30) -> Exam:
    labels = ["negative", "positive"]
    return Exam(name="skewed", items=[Item(id=f"s{i}", input=f"text {i}", reference=labels[int(i >= 25)],
                                           kind=Kind.classification, labels=labels) for i in range(n)])


@pytest.fixture
def runs(store: Store) -> dict[str, str]:
    """Two classification runs on one exam, and a free-form run whose answer is an attack on the page."""
    ids = {spec: sit(skewed_exam(), load_model(spec), store, progress=False).run_id
           for spec in ("mock:first", "mock:last")}
    free = Exam(name="free", items=[Item(id="x1", input=f"Question {XSS}", reference="Paris", kind=Kind.free_form)])
    ids["xss"] = sit(free, load_model(f"mock:text={XSS}"), store, progress=False).run_id
    return ids


@pytest.fixture
def client(runs: dict[str, str]) -> TestClient:
    return TestClient(create_app())


def test_runs_page_lists_every_run_with_its_interval_and_filters(client: TestClient, runs: dict[str, str]) -> None:
    data = client.get("/?format=json").json()
    assert {r["run_id"] for r in data["runs"]} == set(runs.values())
    first = next(r for r in data["runs"] if r["model"] == "mock:first")
    assert first["accuracy"] == pytest.approx(25 / 30) and first["ci_low"] < first["accuracy"] < first["ci_high"]
    assert [r["model"] for r in client.get("/?format=json&model=mock:last").json()["runs"]] == ["mock:last"]
    page = client.get("/").text
    assert runs["mock:first"] in page and "83.3%" in page
    table = list(csv.DictReader(io.StringIO(client.get("/?format=csv").text)))
    assert len(table) == 3 and {"run_id", "accuracy", "ci_low", "ci_high"} <= set(table[0])


def test_a_mixed_exam_gets_one_confusion_matrix_per_label_set(store: Store) -> None:
    sentiment, answer = ["negative", "positive"], ["no", "yes"]
    items = [Item(id=f"s{i}", input=f"text {i}", reference=sentiment[i % 2], kind=Kind.classification,
                  labels=sentiment) for i in range(4)]
    items += [Item(id=f"q{i}", input=f"question {i}", reference=answer[i % 2], kind=Kind.classification,
                   labels=answer) for i in range(4)]
    items += [Item(id="n1", input="2 + 2", reference="4", kind=Kind.numeric)]
    run = sit(Exam(name="mixed", items=items), load_model("mock:first"), store, progress=False).run_id
    data = TestClient(create_app()).get(f"/runs/{run}?format=json").json()
    assert [c["rows"] for c in data["confusions"]] == [sentiment, answer]  # not one 5 x 5 matrix of everything
    assert [sum(map(sum, c["cells"])) for c in data["confusions"]] == [4, 4]
    page = TestClient(create_app()).get(f"/runs/{run}").text
    assert page.count('class="data confusion"') == 2


def test_run_page_scores_confusion_and_pages_filters(client: TestClient, runs: dict[str, str]) -> None:
    run = runs["mock:first"]  # always 'negative': 25 right, the 5 'positive' items wrong
    data = client.get(f"/runs/{run}?format=json").json()
    assert data["score"]["correct"] == 25 and data["score"]["n"] == 30
    confusion = data["confusion"]
    assert confusion["rows"] == ["negative", "positive"]
    assert confusion["cells"] == [[25, 0, 0], [5, 0, 0]]  # columns: negative, positive, (unparsed)
    wrong = client.get(f"/runs/{run}?format=json&wrong=1").json()
    assert wrong["total"] == 5 and {i["item_id"] for i in wrong["items"]} == {f"s{i}" for i in range(25, 30)}
    assert client.get(f"/runs/{run}?format=json&label=positive").json()["total"] == 5
    assert [i["item_id"] for i in client.get(f"/runs/{run}?format=json&q=text 7").json()["items"]] == ["s7"]
    paged = client.get(f"/runs/{run[-6:]}?format=json&page=2").json()  # a unique ending of the id works too
    assert paged["page"] == 2 and paged["pages"] == 1 and paged["items"] == []  # past the last page: empty
    rows = [json.loads(line) for line in client.get(f"/runs/{run}?format=jsonl&wrong=1").text.splitlines()]
    assert len(rows) == 5 and all(r["correct"] is False for r in rows)


def test_item_page_shows_the_answer_choices_and_exact_request(client: TestClient, runs: dict[str, str]) -> None:
    data = client.get(f"/runs/{runs['mock:first']}/items/s3?format=json").json()
    assert data["grade"]["correct"] is True and data["item"]["reference"] == "negative"
    assert data["request"]["choices"] == ["negative", "positive"] and data["request"]["messages"][-1]["content"] == \
        "text 3"
    assert data["choice_logprobs"][0]["choice"] == "negative" and data["next"] == "s4" and data["previous"] == "s2"
    page = client.get(f"/runs/{runs['mock:first']}/items/s3").text
    assert "The exact request" in page and "text 3" in page
    missing = client.get(f"/runs/{runs['mock:first']}/items/nope")
    assert missing.status_code == 404 and "no answer to item" in missing.text


def test_a_damaged_stored_row_is_shown_as_damaged(client: TestClient, runs: dict[str, str], store: Store) -> None:
    with store.transaction():
        store.db.execute("UPDATE responses SET request = '{not json', completion = '{nor this'")
        store.db.execute("UPDATE items SET body = '{damaged' WHERE item_id = 's3'")
    data = client.get(f"/runs/{runs['mock:first']}/items/s3?format=json").json()
    assert "damaged" in data["item"] and "damaged" in data["request"] and "damaged" in data["completion"]
    page = client.get(f"/runs/{runs['mock:first']}/items/s3")
    assert page.status_code == 200 and "not valid JSON" in page.text


def test_compare_page_puts_discordant_items_first(client: TestClient, runs: dict[str, str]) -> None:
    data = client.get(f"/compare/{runs['mock:first']}/{runs['mock:last']}?format=json").json()
    assert data["comparison"]["a_only"] == 25 and data["comparison"]["b_only"] == 5
    assert data["comparison"]["p_value"] < 0.001 and data["total"] == 30
    assert all(i["discordant"] for i in data["items"][:30])  # first and last disagree on every item
    only = client.get(f"/compare/{runs['mock:first']}/{runs['mock:last']}?format=json&discordant=1").json()
    assert only["total"] == 30
    picked = client.get(f"/compare?run={runs['mock:first']}&run={runs['mock:last']}", follow_redirects=False)
    assert picked.status_code == 303 and picked.headers["location"].startswith("/compare/")


def test_leaderboard_ranks_models_by_the_interval_rule(client: TestClient, runs: dict[str, str]) -> None:
    data = client.get("/leaderboard/skewed?format=json").json()
    assert [(r["model"], r["rank"]) for r in data["rows"]] == [("mock:first", 1), ("mock:last", 2)]
    assert "interval" in client.get("/leaderboard/skewed").text


def test_battles_leaderboard_from_a_file(tmp_path: Path, store: Store) -> None:
    battles = tmp_path / "arena.jsonl"
    rows = [{"prompt_id": f"p{k}", "model_a": "big", "model_b": "small", "winner": "a" if k % 4 else "b"}
            for k in range(40)]
    battles.write_text("".join(json.dumps(r) + "\n" for r in rows))
    client = TestClient(create_app(battles={"arena": battles}))
    data = client.get("/leaderboard/battles/arena?format=json").json()
    assert data["rows"][0]["model"] == "big" and data["n_battles"] == 40
    assert "arena" in client.get("/").text
    assert client.get("/leaderboard/battles/other").status_code == 404


def test_model_output_is_escaped_everywhere(client: TestClient, runs: dict[str, str]) -> None:
    run = runs["xss"]
    for path in ("/", f"/runs/{run}", f"/runs/{run}/items/x1", f"/label/{run}"):
        page = client.get(path).text
        assert "<script>window.pwned" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;" in page or path == "/", path
    assert "script-src 'self'" in client.get(f"/runs/{run}").headers["content-security-policy"]


def test_labels_are_stored_undone_and_agreement_is_computed(client: TestClient, runs: dict[str, str],
                                                           store: Store) -> None:
    run = runs["mock:first"]
    for item, right in (("s0", True), ("s1", True), ("s25", False), ("s26", True)):  # s26: the grader said wrong
        assert client.post(f"/api/runs/{run}/labels", json={"item_id": item, "correct": right, "who": "ann"}).json()
    agreement = client.get(f"/label/{run}?format=json&who=ann").json()["agreement"]
    assert agreement["n"] == 4 and agreement["accuracy"] == pytest.approx(0.75)
    assert agreement["disagreements"] == [{"item_id": "s26", "human": True, "grader": False}]
    assert agreement["confusion"]["grader_wrong_human_right"] == 1 and agreement["confusion"][
        "grader_wrong_human_wrong"] == 1
    client.post(f"/api/runs/{run}/labels", json={"item_id": "s26", "correct": None, "who": "ann"})  # undo
    assert client.get(f"/label/{run}?format=json").json()["agreement"]["n"] == 3
    assert {(i, w) for i, w, _, _ in store.labels(run)} == {("s0", "ann"), ("s1", "ann"), ("s25", "ann")}
    assert client.post(f"/api/runs/{run}/labels", json={"item_id": "nope", "correct": True}).status_code == 404
    cross = client.post(f"/api/runs/{run}/labels", json={"item_id": "s0", "correct": False},
                        headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403


def test_a_token_guards_every_request_when_one_is_set(runs: dict[str, str]) -> None:
    client = TestClient(create_app(token="s3cret"))
    assert client.get("/").status_code == 401 and client.get("/static/app.js").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    assert client.get("/?token=s3cret").status_code == 200  # sets the cookie ...
    assert client.get(f"/runs/{runs['mock:first']}").status_code == 200  # ... that later requests carry
    bearer = TestClient(create_app(token="s3cret"))
    assert bearer.get("/?format=json", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_unknown_pages_and_formats_answer_clearly(client: TestClient, runs: dict[str, str]) -> None:
    assert client.get("/runs/nope").status_code == 404 and "no run" in client.get("/runs/nope").text
    assert client.get("/runs/nope?format=json").json()["error"].startswith("no run")
    assert client.get(f"/runs/{runs['mock:first']}?format=xml").status_code == 400
    assert client.get("/teach/nothing").status_code == 404


@pytest.mark.slow
@sqlite_only("its timings are SQLite's, and 300,000 rows into PostgreSQL take about 30 s on this machine")
def test_a_run_of_100000_items_pages_in_well_under_a_second(store: Store) -> None:
    """Paged SQL: the run page costs one page of rows, however big the run."""
    labels = ["negative", "positive"]
    exam = Exam(name="big", items=[Item(id=f"b{i}", input=f"text {i}", reference=labels[i % 2],
                                        kind=Kind.classification, labels=labels) for i in range(100_000)])
    run = store.create_run(exam, "mock:first", "auto", len(exam.items), "fp", {"kinds": ["classification"]})
    with store.transaction():
        store.put_responses("mock", "mock:first", [("k", Request(prompt="p"), Completion(text="negative"))])
        store.put_answers(run, [(k, Answer(item_id=i.id, text="negative", request_key="k"),
                                 Grade(item_id=i.id, grader="choice", score=float(k % 2 == 0), correct=k % 2 == 0,
                                       extracted="negative")) for k, i in enumerate(exam.items)])
    client = TestClient(create_app())
    client.get(f"/runs/{run}")  # warm the page cache of SQLite
    start = time.perf_counter()
    page = client.get(f"/runs/{run}?page=1000")
    elapsed = time.perf_counter() - start
    assert page.status_code == 200 and "b49950" in page.text
    assert elapsed < 1.0, f"run page took {elapsed:.2f} s"
    start = time.perf_counter()
    found = client.get(f"/runs/{run}?format=json&wrong=1&q=text 99999").json()
    assert found["total"] == 1 and time.perf_counter() - start < 1.0
    other = store.create_run(exam, "mock:last", "auto", len(exam.items), "fp2", {"kinds": ["classification"]})
    with store.transaction():
        store.put_answers(other, [(k, Answer(item_id=i.id, text="positive", request_key="k"),
                                   Grade(item_id=i.id, grader="choice", score=float(k % 3 == 0), correct=k % 3 == 0,
                                         extracted="positive")) for k, i in enumerate(exam.items)])
    start = time.perf_counter()  # McNemar and the discordant items from SQL, the bootstrap by multinomial counts
    compared = client.get(f"/compare/{run}/{other}?format=json&discordant=1").json()
    assert compared["comparison"]["n"] == 100_000 and compared["total"] == 50_000
    assert time.perf_counter() - start < 3.0


def test_stored_labels_feed_judge_check_and_the_labels_command(client: TestClient, runs: dict[str, str],
                                                               tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from magister.cli import app

    run = runs["mock:first"]
    for item, right in (("s0", True), ("s1", True), ("s25", False), ("s26", True), ("s27", False)):
        client.post(f"/api/runs/{run}/labels", json={"item_id": item, "correct": right, "who": "ann"})
    runner = CliRunner()
    exported = runner.invoke(app, ["labels", run, "-o", str(tmp_path / "labels.jsonl"), "--json"])
    assert exported.exit_code == 0, exported.output
    rows = json.loads(exported.stdout)
    assert [(r["id"], r["human"], r["grader_correct"]) for r in rows] == [
        ("s0", True, True), ("s1", True, True), ("s25", False, False), ("s26", True, False), ("s27", False, False)]
    assert (tmp_path / "labels.jsonl").read_text().count("\n") == 5
    checked = runner.invoke(app, ["judge-check", "--run", run, "--grader", "exact", "--json"])
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)  # `exact` on the stored answers: 'negative' matches s0, s1 only
    assert report["n"] == 5 and report["accuracy"] == pytest.approx(4 / 5)
    nothing = runner.invoke(app, ["labels", runs["mock:last"]])
    assert nothing.exit_code == 1 and "no human labels" in nothing.output


def test_the_label_page_draws_the_graders_reliability_against_the_labels(client: TestClient,
                                                                         runs: dict[str, str]) -> None:
    run = runs["mock:first"]
    for item, right in (("s0", True), ("s1", False), ("s25", False)):
        client.post(f"/api/runs/{run}/labels", json={"item_id": item, "correct": right})
    curve = client.get(f"/label/{run}?format=json").json()["agreement"]["calibration_curve"]
    assert {(round(b["mean_score"]), b["n"], round(b["human_right"], 2)) for b in curve} == {(1, 2, 0.5), (0, 1, 0.0)}
    assert "Grader score vs your labels" in client.get(f"/label/{run}").text


def test_dns_rebinding_and_near_miss_origins_are_refused(runs: dict[str, str]) -> None:
    from magister.web.app import LOOPBACK

    run = runs["mock:first"]
    client = TestClient(create_app(hosts=LOOPBACK), base_url="http://127.0.0.1:8765")
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    rebound = {"Host": "evil.example:8765", "Origin": "http://evil.example:8765"}
    assert client.get("/", headers={"Host": "evil.example:8765"}).status_code == 400
    post = client.post(f"/api/runs/{run}/labels", json={"item_id": "s0", "correct": False}, headers=rebound)
    assert post.status_code == 400
    for origin in ("https://127.0.0.1:8765", "http://127.0.0.1:9999", "http://127.0.0.1"):
        refused = client.post(f"/api/runs/{run}/labels", json={"item_id": "s0", "correct": False},
                              headers={"Origin": origin})
        assert refused.status_code == 403, origin
    same = client.post(f"/api/runs/{run}/labels", json={"item_id": "s0", "correct": False},
                       headers={"Origin": "http://127.0.0.1:8765"})
    assert same.status_code == 200


@pytest.mark.parametrize("path", ["/runs/{run}?page=99999999999999999999", "/runs/{run}?page=-1",
                                  "/runs/{run}?page=abc", "/label/{run}?sample=-1", "/label/{run}?sample=0",
                                  "/compare/{run}/{run}?page=0"])
def test_bad_parameters_answer_400_with_a_message(client: TestClient, runs: dict[str, str], path: str) -> None:
    answer = client.get(path.format(run=runs["mock:first"]))
    assert answer.status_code == 400 and "must be a whole number" in answer.text
    as_json = client.get(path.format(run=runs["mock:first"]) + "&format=json")
    assert as_json.status_code == 400 and "must be a whole number" in as_json.json()["error"]
