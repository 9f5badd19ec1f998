"""The command line, driven in-process with the mock model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import write_jsonl
from magister.cli import app

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def exam_file(tmp_path: Path) -> Path:
    rows = [{"id": f"q{i}", "text": f"question {i}", "label": ["neg", "pos"][i % 2]} for i in range(10)]
    return write_jsonl(tmp_path / "exam.jsonl", rows)


def test_exam_json_then_cached(exam_file: Path) -> None:
    first = json.loads(invoke("exam", str(exam_file), "--model", "mock:first", "--json"))
    assert {"run_id", "n", "accuracy", "ci_low", "ci_high", "cache_hits"} <= set(first)
    assert first["n"] == 10 and first["accuracy"] == 0.5 and first["cache_hits"] == 0
    second = json.loads(invoke("exam", str(exam_file), "--model", "mock:first", "--json"))
    assert second["cache_hits"] == 10 and second["model_calls"] == 0


def test_exam_options(exam_file: Path, tmp_path: Path) -> None:
    out = json.loads(invoke("exam", str(exam_file), "--model", "mock:text=pos", "--limit", "4", "--json",
                            "--fewshot", str(exam_file), "--shots", "2", "--instructions", "Pick: {labels}"))
    assert out["n"] == 4 and out["accuracy"] == 0.5
    shown = json.loads(invoke("show", out["run_id"], "--json"))
    messages = shown["items"][0]["request"]["messages"]
    assert messages[0]["content"] == "Pick: neg, pos" and len(messages) == 2 + 2 * 2
    assert shown["config"]["fewshot"] == 2


def test_runs_and_show_tables(exam_file: Path) -> None:
    run_id = json.loads(invoke("exam", str(exam_file), "--model", "mock:last", "--json"))["run_id"]
    listed = json.loads(invoke("runs", "--json"))
    assert listed[0]["run_id"] == run_id and listed[0]["accuracy"] == 0.5
    table = invoke("show", run_id)
    assert "q0" in table and "accuracy 50.0%" in table
    assert "exam" in invoke("runs")


def test_show_escapes_terminal_control_sequences(tmp_path: Path) -> None:
    evil = "pos\x1b]52;c;cHduZWQ=\x07\x1b[2J [bold]not markup[/bold]"
    path = write_jsonl(tmp_path / "evil.jsonl", [{"id": "e0", "question": "Say it", "answer": "pos"}])
    run_id = json.loads(invoke("exam", str(path), "--model", f"mock:text={evil}", "--json"))["run_id"]
    for output in (invoke("show", run_id), invoke("show", run_id, "--item", "e0")):
        assert "\x1b" not in output and "\x07" not in output
        assert "\\x1b]52" in output and "[bold]not markup[/bold]" in output


def test_show_reads_a_damaged_row_without_a_crash(tmp_path: Path, magister_home: Path) -> None:
    from magister.store import Store

    path = write_jsonl(tmp_path / "e.jsonl", [{"id": f"e{i}", "question": f"Say {i}", "answer": "pos"} for i in range(3)])
    run_id = json.loads(invoke("exam", str(path), "--model", "mock:text=pos", "--json"))["run_id"]
    store = Store(magister_home / "magister.db")
    with store.transaction():
        store.db.execute("UPDATE responses SET request = '{not json', completion = '{nor this'")
        store.db.execute("UPDATE items SET body = '{damaged' WHERE item_id = 'e1'")
    store.close()
    streamed = json.loads(invoke("show", run_id, "--json"))
    assert len(streamed["items"]) == 3 and all("damaged" in i["request"] for i in streamed["items"])
    detail = json.loads(invoke("show", run_id, "--item", "e1", "--json"))
    assert "damaged" in detail["item"] and "damaged" in detail["completion"] and detail["judge"] is None
    assert "not valid JSON" in invoke("show", run_id, "--item", "e1")


def test_models_lists_backends() -> None:
    rows = json.loads(invoke("models", "--json"))
    assert {r["backend"] for r in rows} == {"llamacpp", "openai-compatible", "openai", "hf", "mock"}
    assert next(r for r in rows if r["backend"] == "llamacpp")["choices"] is True


def test_errors_are_one_line(exam_file: Path, magister_home: Path) -> None:
    result = runner.invoke(app, ["exam", str(exam_file), "--model", "nonsense"])
    assert result.exit_code == 1 and "Error: model spec 'nonsense' must look like BACKEND:NAME" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["exam", str(exam_file), "--model", "mock:first", "--grader", "judge"])
    assert result.exit_code == 1 and "unknown grader 'judge'" in result.output
    assert not (magister_home / "magister.db").exists()  # bad options write nothing
    result = runner.invoke(app, ["show", "no-such-run"])
    assert result.exit_code == 1 and "no run 'no-such-run'" in result.output


def test_demo_with_mock() -> None:
    out = json.loads(invoke("demo", "--model", "mock:first", "--json"))
    assert out["n"] == 44 and out["exam"] == "demo"


@pytest.mark.llamacpp
def test_demo_on_the_embedded_model() -> None:
    """The README's main job, offline: the embedded model sits the shipped exam, then the cache answers."""
    pytest.importorskip("llama_cpp")
    first = json.loads(invoke("demo", "--json"))
    assert first["n"] == 44 and first["model"] == "llamacpp:smollm2"
    assert first["model_calls"] == 44 and first["parse_failures"] <= 4 and first["accuracy"] > 0.25
    again = json.loads(invoke("demo", "--json"))
    assert again["cache_hits"] == 44 and again["accuracy"] == first["accuracy"]


def test_json_output_is_strict_json_and_limits_must_be_positive(tmp_path: Path) -> None:
    from magister.jsonl import finite as _finite

    assert _finite({"a": float("nan"), "b": [1.0, float("inf")], "c": "x"}) == {"a": None, "b": [1.0, None], "c": "x"}
    exam = write_jsonl(tmp_path / "e.jsonl", [{"id": str(i), "question": f"q{i}", "answer": "x"} for i in range(3)])
    result = runner.invoke(app, ["exam", str(exam), "-m", "mock:first", "--limit", "-2"])
    assert result.exit_code == 2 and "greater than or equal to 1" in result.output


def test_teach_help_lists_every_config_field() -> None:
    """`--set FIELD=VALUE` reaches every field, and `teach --help` names them all, nested ones dotted."""
    import re

    from pydantic import BaseModel

    from magister.teach.config import TeachConfig, TrainConfig

    text = re.sub(r"\x1b\[[0-9;]*m", "", invoke("teach", "--help"))
    listed = text[text.index("Every config field"):]
    names = []
    for name, field in TeachConfig.model_fields.items():  # the sections (fields, budget, train) by their fields
        section = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) \
            else None
        names += [f"{name}.{inner}" for inner in section.model_fields] if section else [name]
    assert {f"train.{name}" for name in TrainConfig.model_fields} <= set(names)
    missing = [name for name in names if not re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", listed)]
    assert not missing, f"not in `magister teach --help`: {missing}"


def test_importing_the_cli_stays_light() -> None:
    """The commands import the library when they run: `magister --help` loads no teaching, web or plotting code."""
    import subprocess
    import sys

    heavy = ("magister.teach", "magister.web", "matplotlib", "torch", "transformers", "fastapi")
    code = f"import sys, magister.cli; print([m for m in sys.modules if m.startswith({heavy!r})])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_negative_shots_and_compare_discordant_zero(exam_file: Path) -> None:
    refused = runner.invoke(app, ["exam", str(exam_file), "-m", "mock:first", "--fewshot", str(exam_file),
                                  "--shots", "-3"])
    assert refused.exit_code == 2 and "shots" in refused.output
    a = json.loads(invoke("exam", str(exam_file), "--model", "mock:first", "--json"))["run_id"]
    b = json.loads(invoke("exam", str(exam_file), "--model", "mock:last", "--json"))["run_id"]
    assert "Items where they differ" not in invoke("compare", a, b, "--discordant", "0")


def test_a_postgres_error_in_a_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    psycopg = pytest.importorskip("psycopg")
    import typer

    from magister.cli.common import guard

    @guard
    def command() -> None:
        raise psycopg.errors.DiskFull('could not extend file "base/16384/2619": No space left on device\nHINT: x')

    with pytest.raises(typer.Exit):
        command()
    shown = capsys.readouterr().err
    assert "the PostgreSQL store failed: could not extend file" in shown and "HINT" not in shown
    assert "Traceback" not in shown
