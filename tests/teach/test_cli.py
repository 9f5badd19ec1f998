"""`magister teach` from the command line: config file plus flags, JSON, report files, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from magister.cli import app

pytestmark = pytest.mark.hf
runner = CliRunner()


def test_teach_cli_runs_reports_and_resumes(task: tuple[Path, Path], tiny_student: Path, tmp_path: Path) -> None:
    seed, exam = task
    config = tmp_path / "teach.yaml"
    config.write_text(f"seed: {seed}\nexam: {exam}\nstudent: {tiny_student}\nrounds: 2\n"
                      "strategies: [rephrase]\ntrain: {epochs: 1, batch_size: 4}\n")
    out = tmp_path / "run"
    args = ["teach", str(config), "--teacher", "mock:echo", "--verify", "off", "--train-seed", "3", "--out", str(out)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # mock:echo repeats the prompt, so every rephrasing copies the mined item: nothing new is kept
    assert [r["round"] for r in report["rounds"]] == [0, 1] and report["rounds"][1]["kept"] == 0
    assert report["stopped"] == "no new example was kept" and report["config"]["teacher"] == "mock:echo"
    assert report["config"]["train"]["seed"] == 3
    assert (out / "report.json").exists() and (out / "curve.png").exists() and (out / "report.html").exists()
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "accuracy" in resumed.stdout and "no new example was kept" in resumed.stdout


def test_teach_cli_rejects_a_bad_config_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "teach.yaml"
    config.write_text("seed: a.jsonl\nexam: b.jsonl\nstrategies: [guess]\n")
    result = runner.invoke(app, ["teach", str(config)])
    assert result.exit_code == 1 and "field 'strategies.0'" in result.output


def test_teach_cli_over_training_seeds(task: tuple[Path, Path], tiny_student: Path, tmp_path: Path) -> None:
    seed, exam = task
    out = tmp_path / "seeds"
    args = ["teach", "--seed", str(seed), "--exam", str(exam), "--student", str(tiny_student), "--rounds", "1",
            "--strategies", "replay", "--teacher", "mock:echo", "--epochs", "1", "--train-seeds", "0,1",
            "--out", str(out)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    analysis = json.loads(result.stdout)
    assert analysis["seeds"] == 2 and len(analysis["round0"]["per_seed"]) == 2
    assert (out / "seed-0" / "round-1").exists() and (out / "seed-1" / "round-1").exists()
    table = runner.invoke(app, args)  # finished seeds are read back
    assert table.exit_code == 0, table.output
    assert "round 0 (seed only)" in table.stdout and "change" in table.stdout
    bad = runner.invoke(app, [*args[:-4], "--train-seeds", "0,x", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "comma-separated integers" in bad.output
