"""A real teaching run (tiny student, scripted teacher) seen through `magister view`'s /teach page."""

from __future__ import annotations

import json

import pytest

from magister.models.mock import MockModel
from magister.store import Store
from magister.teach import Teach, TeachConfig

from helpers import scripted

pytestmark = pytest.mark.hf
pytest.importorskip("fastapi")


def test_teach_page_shows_rounds_examples_changes_and_the_training_data(config: TeachConfig) -> None:
    from fastapi.testclient import TestClient

    from magister.web.app import create_app

    teach = Teach(config, models={"mock:teacher": MockModel("mock:teacher", respond=scripted)}, progress=False)
    teach.run()
    from magister.web import report as web_report

    web_report.write(teach.report(), config.out)
    client = TestClient(create_app())
    listed = client.get("/?format=json").json()["teach_runs"]
    assert [t["name"] for t in listed] == ["run"]
    data = client.get("/teach/run?format=json").json()
    assert [r["round"] for r in data["rounds"]] == [0, 1, 2] and data["baseline"]["n"] == 8
    one = data["rounds"][1]
    drafts = json.loads((config.out / "round-1" / "drafts.json").read_text())
    assert len(one["drafts"]) == len(drafts)  # every example, kept and rejected, none cut
    assert sum(d["kept"] for d in one["drafts"]) == one["kept"]
    assert all(d["reason"] for d in one["drafts"] if not d["kept"])
    assert one["mined_items"] and all("wrong" in m for m in one["mined_items"]) and one["losses"]
    page = client.get("/teach/run").text
    for column in ("mined", "written", "duplicates", "rejected", "kept", "training examples"):
        assert f"<th>{column}</th>" in page
    assert '<svg class="chart"' in page and f"/runs/{one['run_id']}" in page
    rows = [json.loads(line) for line in client.get("/teach/run/data.jsonl").text.splitlines()]
    assert len(rows) == data["rounds"][-1]["training_examples"]
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    assert Store().teach_runs()[0][1] == config.out.resolve()
    examples = client.get("/teach/run?format=jsonl").text.splitlines()
    assert len(examples) == sum(len(r["drafts"]) for r in data["rounds"])
    assert client.get("/teach/run?format=csv&table=rounds").text.splitlines()[0].startswith("round,")
