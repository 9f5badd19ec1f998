"""The run folder's paths: one owner, rounds in numeric order."""

from __future__ import annotations

from pathlib import Path

from magister.teach.rundir import RunDir


def test_paths_and_round_order(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for number in (10, 2, 0):
        run.round(number).path.mkdir()
    (tmp_path / "round-notes").mkdir()  # not a round
    assert [r.number for r in run.rounds()] == [0, 2, 10]
    assert run.round(2).grades == tmp_path / "round-2" / "grades.json"
    assert run.round(1).fold(3).answers == tmp_path / "round-1" / "folds" / "fold-3" / "answers.json"
    assert run.state.name == "state.json" and run.baseline_grades.name == "baseline-grades.json"
