"""Every path of a teaching run's folder, named once.

A teaching run lives in one folder (`TeachConfig.out`); the loop writes it, `magister view`'s
teaching page and the benchmarks read it. The layout:

    state.json                 the configuration and how far the run got
    baseline.json              the untrained student's exam summary
    baseline-grades.json       its grade per exam item
    report.json / report.html / curve.png
    round-N/
        round.json             the round's record (`Round`), with the stages done
        data.jsonl             the training data of the round (seed + everything kept so far)
        mined.json             the errors mined from the previous round's student
        drafts.json            what the teacher wrote, with each filter's verdict
        probe.jsonl, probe-rejected.json   (mine: probe) the teacher-written probe exam
        losses.json            training losses
        adapter/, model/       the trained student (LoRA adapter; merged model)
        grades.json            its grade per exam item
        folds.json             (mine: folds) out-of-fold accuracy and answers
        folds/fold-K/          one fold student: answers.json (model/ and adapter/ deleted after)

Nothing here reads or writes a file; it only says where each one is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROUND_PREFIX = "round-"


@dataclass(frozen=True)
class StudentDir:
    """A folder `train()` writes a student into: `adapter/` (LoRA) and `model/` (merged)."""

    path: Path

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"


@dataclass(frozen=True)
class FoldDir(StudentDir):
    """One fold student's folder inside a round."""

    @property
    def answers(self) -> Path:
        return self.path / "answers.json"


@dataclass(frozen=True)
class RoundDir(StudentDir):
    """One round's folder."""

    number: int

    @property
    def record(self) -> Path:
        return self.path / "round.json"

    @property
    def data(self) -> Path:
        return self.path / "data.jsonl"

    @property
    def mined(self) -> Path:
        return self.path / "mined.json"

    @property
    def drafts(self) -> Path:
        return self.path / "drafts.json"

    @property
    def probe(self) -> Path:
        return self.path / "probe.jsonl"

    @property
    def probe_rejected(self) -> Path:
        return self.path / "probe-rejected.json"

    @property
    def losses(self) -> Path:
        return self.path / "losses.json"

    @property
    def grades(self) -> Path:
        return self.path / "grades.json"

    @property
    def folds(self) -> Path:
        return self.path / "folds.json"

    def fold(self, number: int) -> FoldDir:
        return FoldDir(self.path / "folds" / f"fold-{number}")


@dataclass(frozen=True)
class RunDir:
    """A teaching run's folder: `RunDir(out).round(2).grades` is `out/round-2/grades.json`."""

    path: Path

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def baseline(self) -> Path:
        return self.path / "baseline.json"

    @property
    def baseline_grades(self) -> Path:
        return self.path / "baseline-grades.json"

    @property
    def report(self) -> Path:
        return self.path / "report.json"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    @property
    def curve(self) -> Path:
        return self.path / "curve.png"

    def round(self, number: int) -> RoundDir:
        return RoundDir(self.path / f"{ROUND_PREFIX}{number}", number)

    def rounds(self) -> list[RoundDir]:
        """The round folders that exist, in order (round-10 after round-9)."""
        found = [p for p in self.path.glob(f"{ROUND_PREFIX}*")
                 if p.is_dir() and p.name.removeprefix(ROUND_PREFIX).isdigit()]
        return sorted((RoundDir(p, int(p.name.removeprefix(ROUND_PREFIX))) for p in found), key=lambda r: r.number)
