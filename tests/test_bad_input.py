"""Every file reader: bytes that are not UTF-8 give one line naming the file and line; a BOM is fine."""

from __future__ import annotations

from pathlib import Path

import pytest

from magister.errors import DataError
from magister.jsonl import read_rows
from magister.stats.anchors import read_matrix
from magister.teach.config import load_config

LATIN1 = "caf\xe9".encode("latin-1")


def test_non_utf8_files_fail_with_file_and_line(tmp_path: Path) -> None:
    rows = tmp_path / "pairs.jsonl"
    rows.write_bytes(b'{"instruction": "ok", "response_a": "a", "response_b": "b"}\n{"instruction": "' + LATIN1
                     + b'"}\n')
    with pytest.raises(DataError, match=r"pairs.jsonl:2: not valid UTF-8"):
        read_rows(rows, ["instruction"])
    matrix = tmp_path / "m.csv"
    matrix.write_bytes(b"item,model\nq1,1\n" + LATIN1 + b",0\n")
    with pytest.raises(DataError, match=r"m.csv:3: not valid UTF-8"):
        read_matrix(matrix)
    config = tmp_path / "teach.yaml"
    config.write_bytes(b"seed: a.jsonl\nexam: " + LATIN1 + b".jsonl\n")
    with pytest.raises(DataError, match=r"teach.yaml:2: not valid UTF-8"):
        load_config(config, {})


def test_a_byte_order_mark_is_accepted_everywhere(tmp_path: Path) -> None:
    rows = tmp_path / "pairs.jsonl"
    rows.write_bytes(b'\xef\xbb\xbf{"instruction": "i", "response_a": "a", "response_b": "b"}\n')
    assert read_rows(rows, ["instruction"])[0]["instruction"] == "i"
    matrix = tmp_path / "m.csv"
    matrix.write_bytes(b"\xef\xbb\xbfitem,model\nq1,1\nq2,0\n")
    _, items, models = read_matrix(matrix)
    assert items == ["q1", "q2"] and models == ["model"]


@pytest.mark.parametrize("name,value,message", [("MAGISTER_HTTP_CONCURRENCY", "abc", "not an integer"),
                                                ("MAGISTER_HTTP_CONCURRENCY", "0", "at least 1"),
                                                ("MAGISTER_HTTP_TIMEOUT", "abc", "not a number")])
def test_bad_http_settings_are_one_clear_error(name: str, value: str, message: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from magister.errors import ConfigError
    from magister.models.openai_compat import OpenAICompatModel

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name}=.*{message}"):
        OpenAICompatModel("openai-compatible:http://127.0.0.1:9/v1#m")


def test_a_home_that_is_a_file_or_a_damaged_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from magister.errors import ConfigError
    from magister.store import Store

    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("MAGISTER_HOME", str(home))
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        Store()
    damaged = tmp_path / "bad.db"
    damaged.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a Magister database, or a damaged one"):
        Store(damaged)


def test_a_csv_header_that_names_a_column_twice(tmp_path: Path) -> None:
    from magister.exams.load import load_exam

    path = tmp_path / "exam.csv"
    path.write_text("question,answer,answer\nWhat is 2+2?,4,5\n")
    with pytest.raises(DataError, match=r"exam.csv:1: the header names column 'answer' twice"):
        load_exam(path)


def test_an_anchors_file_with_missing_keys_and_a_missing_output_folder(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from magister.cli import app
    from magister.stats.anchors import Anchors

    path = tmp_path / "anchors.json"
    path.write_text(json.dumps({"format": "magister-anchors/1", "items": ["a"], "anchors": ["a"]}))
    with pytest.raises(DataError, match=r"anchors.json: anchors file lacks weights"):
        Anchors.load(path)
    matrix = tmp_path / "m.csv"
    matrix.write_text("item,m1,m2\nq1,1,0\nq2,0,1\n")
    result = CliRunner().invoke(app, ["anchors", str(matrix), "-o", str(tmp_path / "no" / "anchors.json")])
    assert result.exit_code == 1 and "does not exist" in result.output and "Fitting" not in result.output


@pytest.mark.slow
def test_a_damaged_saved_dataset_is_one_clear_error(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from magister.exams.load import load_exam

    saved = tmp_path / "saved"
    datasets.Dataset.from_list([{"question": f"q{i}", "answer": str(i)} for i in range(50)]).save_to_disk(str(saved))
    assert len(load_exam(saved).items) == 50
    (saved / "state.json").write_text("{not json")
    with pytest.raises(DataError, match="damaged saved dataset"):
        load_exam(saved)
    again = tmp_path / "again"
    datasets.Dataset.from_list([{"question": f"q{i}", "answer": str(i)} for i in range(50)]).save_to_disk(str(again))
    arrow = next(again.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    with pytest.raises(DataError, match="damaged saved dataset"):
        load_exam(again)


@pytest.mark.parametrize("name,data,message", [
    ("nul.csv", b'question,answer\n"a\x00b",x\n', r"nul.csv:2: holds a NUL byte"),
    ("deep.jsonl", b'{"question": "q", "answer": "a", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n",
     r"deep.jsonl:1: JSON nested too deeply"),
    ("long.jsonl", b'{"question": "q", "answer": "a"}\n{"id": ' + b"9" * 5001 + b', "question": "q", "answer": "a"}\n',
     r"long.jsonl:2: not readable JSON"),
])
def test_files_a_parser_chokes_on_are_one_clear_error(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    from magister.exams.load import load_exam

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=message):
        load_exam(path)
    if name.endswith(".jsonl"):
        with pytest.raises(DataError, match=message):
            read_rows(path, ["question"])


def test_a_judge_check_file_whose_question_is_a_number(tmp_path: Path) -> None:
    from magister.judges.check import Columns, check

    path = tmp_path / "labels.jsonl"
    path.write_text('{"question": 5, "response": "a", "reference": "a", "human": true}\n')
    with pytest.raises(DataError, match=r"labels.jsonl:1: expected text, got int .*\(field 'question'\)"):
        check(path, "rules", None, Columns())


def test_a_damaged_database_page_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from helpers import write_jsonl
    from magister.cli import app

    monkeypatch.setenv("MAGISTER_HOME", str(tmp_path / "home"))
    rows = [{"id": f"q{i}", "text": f"a longer sentence number {i} " * 8, "label": ["neg", "pos"][i % 2]}
            for i in range(300)]
    exam = write_jsonl(tmp_path / "exam.jsonl", rows)
    runner = CliRunner()
    assert runner.invoke(app, ["exam", str(exam), "-m", "mock:first", "--json"]).exit_code == 0
    db = tmp_path / "home" / "magister.db"
    data = bytearray(db.read_bytes())
    page = 4096
    for start in range(page * 3, len(data) - page, page * 2):  # scribble over every other page past the schema
        data[start:start + page] = b"\xde\xad\xbe\xef" * (page // 4)
    db.write_bytes(bytes(data))
    for args in (["runs"], ["exam", str(exam), "-m", "mock:first"]):
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        assert "damaged" in result.output and len(result.output.strip().splitlines()) <= 3, result.output


def test_a_full_disk_is_one_line_and_the_same_command_resumes(tmp_path: Path) -> None:
    """`ulimit -f` makes every write past a size fail as a full disk does (EFBIG; Python ignores SIGXFSZ)."""
    import json
    import os
    import resource
    import sqlite3
    import subprocess
    import sys

    rows = [{"id": f"q{i}", "text": f"item {i} " + "x" * 400, "label": ["neg", "pos"][i % 2]} for i in range(500)]
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    command = [sys.executable, "-m", "magister.cli", "exam", str(path), "--model", "mock:first", "--json"]

    def run(home: Path, limit: int | None = None) -> subprocess.CompletedProcess:
        def cap() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        return subprocess.run(command, env={**os.environ, "MAGISTER_HOME": str(home)}, capture_output=True,
                              text=True, timeout=120, preexec_fn=cap)

    assert run(tmp_path / "roomy").returncode == 0
    full_size = (tmp_path / "roomy" / "magister.db").stat().st_size
    home = tmp_path / "full"
    home.mkdir()
    failed = run(home, limit=full_size * 3 // 4)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr + failed.stdout
    error_lines = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "could not be written" in error_lines[0] and "free some disk space" in error_lines[0]
    with sqlite3.connect(home / "magister.db") as conn:
        saved = conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    assert 0 < saved < 500

    again = run(home)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["n"] == 500 and summary["resumed_items"] == saved
    assert summary["model_calls"] + summary["cache_hits"] == 500 - saved  # nothing answered is asked again
    with sqlite3.connect(home / "magister.db") as conn:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("finished",)]
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
