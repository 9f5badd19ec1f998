"""Out-of-fold mining and the dev score: errors against human labels, and an exam that decides nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from magister.errors import ConfigError
from magister.models.mock import MockModel
from magister.teach import Teach, TeachConfig, TrainConfig
from magister.teach import loop as teach_loop
from magister.web import report as web_report
from magister.teach.loop import assign_folds, choose_round
from magister.types import Item, Kind

from helpers import scripted, write_jsonl

pytestmark = pytest.mark.hf

# Labels no rule of the words gives: a student can learn them by heart (in-sample) but not for an item it
# never saw (out of fold).
TEXTS = ["good movie", "great food", "nice film", "fine meal", "bad movie", "awful food", "terrible film",
         "bad meal", "good food", "awful film", "nice movie", "terrible meal"]
ARBITRARY = ["positive", "negative", "negative", "positive", "positive", "negative", "positive", "negative",
             "negative", "positive", "negative", "positive"]


@pytest.fixture
def folds_config(tiny_student: Path, tmp_path: Path) -> TeachConfig:
    seed = write_jsonl(tmp_path / "seed.jsonl", [{"id": f"s{i}", "text": t, "label": y}
                                                  for i, (t, y) in enumerate(zip(TEXTS, ARBITRARY))])
    exam = write_jsonl(tmp_path / "exam.jsonl", [{"id": f"e{i}", "text": t, "label": y} for i, (t, y) in
                                                  enumerate(zip(["fine film", "awful meal", "great movie"],
                                                                ["positive", "negative", "positive"]))])
    return TeachConfig(seed=seed, exam=exam, teacher="mock:teacher", student=str(tiny_student), rounds=1,
                       folds=3, per_item=2, verify_shots=2, out=tmp_path / "run",
                       train=TrainConfig(method="full", epochs=30, batch_size=4, learning_rate=1e-2))


def run(config: TeachConfig, **kw) -> Teach:  # noqa: ANN003
    teach = Teach(config, models={"mock:teacher": MockModel("mock:teacher", respond=scripted)}, progress=False, **kw)
    teach.run()
    return teach


def test_folds_are_stratified_fixed_and_cover_every_item() -> None:
    items = [Item(id=f"x{i}", input="t", reference="ab"[i % 2], kind=Kind.classification, labels=["a", "b"])
             for i in range(12)]
    folds = assign_folds(items, 3)
    assert folds == assign_folds(list(reversed(items)), 3)  # the order of the file does not matter
    for fold in range(3):
        held = [i for i in items if folds[i.id] == fold]
        assert len(held) == 4 and {i.reference for i in held} == {"a", "b"}


def test_fold_mining_finds_errors_that_in_sample_mining_misses(folds_config: TeachConfig,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    teach = run(folds_config)
    zero, one = teach.rounds
    in_sample = teach._mine(folds_config.out / "round-0" / "model", teach.seed.items)
    assert zero.folds is not None and zero.folds["n"] == len(TEXTS) and zero.folds["k"] == 3
    assert one.mined == zero.folds["errors"] > len(in_sample)  # the student knows its own items by heart
    mined = json.loads((folds_config.out / "round-1" / "mined.json").read_text())
    gold = dict(zip((f"s{i}" for i in range(len(TEXTS))), ARBITRARY))
    for m in mined:  # every error is against a person's label, with the runner-up and the margin
        assert m["wrong"] != gold[m["id"]] == m["gold"] and m["runner_up"] == gold[m["id"]] and m["margin"] > 0
    assert zero.dev and zero.dev["accuracy"] == zero.folds["accuracy"] and "out-of-fold" in zero.dev["source"]
    assert one.dev is not None  # the last round's dev score, for choosing the final round
    assert not list((folds_config.out / "round-0" / "folds").glob("*/model"))  # fold models are not kept
    drafts = json.loads((folds_config.out / "round-1" / "drafts.json").read_text())
    assert {d["strategy"] for d in drafts} == {"contrast"}
    report = teach.report()
    assert report["chosen_round"] == choose_round(report["rounds"], "dev")
    monkeypatch.setitem(sys.modules, "fastapi", None)  # the report needs no [web] extra
    for name in [m for m in sys.modules if m == "magister.web.app"]:
        monkeypatch.delitem(sys.modules, name)
    page = web_report.write(report, folds_config.out)["html"].read_text()
    assert "Out of fold" in page and "dev score" in page and "runner-up" in page


def test_the_exam_never_changes_a_decision(folds_config: TeachConfig, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """Two runs whose exam grades are scrambled differently make the same rounds, mining and final choice."""
    folds_config.rounds, folds_config.patience, folds_config.train.epochs = 2, 1, 4
    real = Teach._sit
    outcomes = []
    for flip in (0, 1):
        def scrambled(self: Teach, model_dir: Path, exam, flip=flip):  # noqa: ANN001, ANN202
            summary, grades = real(self, model_dir, exam)
            if exam.name == self.exam.name:  # only the held-out exam: the dev file or folds untouched
                grades = {i: (n + flip + len(str(model_dir))) % 2 == 0 for n, i in enumerate(grades)}
                summary = {**summary, "accuracy": sum(grades.values()) / len(grades)}
            return summary, grades

        monkeypatch.setattr(Teach, "_sit", scrambled)
        config = folds_config.model_copy(update={"out": tmp_path / f"run-{flip}"})
        teach = run(config)
        outcomes.append(([r.round for r in teach.rounds], teach.stopped, teach.final().round,
                         [r.dev for r in teach.rounds], [r.mined for r in teach.rounds], [r.kept for r in teach.rounds],
                         [r.exam["accuracy"] for r in teach.rounds]))
    first, second = outcomes
    assert first[:6] == second[:6]
    assert first[6] != second[6]  # the exam scores did differ


def test_a_dev_file_gives_the_dev_score(folds_config: TeachConfig, tmp_path: Path) -> None:
    folds_config.dev = write_jsonl(tmp_path / "dev.jsonl", [{"id": "d1", "text": "fine food", "label": "positive"},
                                                            {"id": "d2", "text": "bad film", "label": "negative"}])
    folds_config.train.epochs = 2
    teach = run(folds_config)
    assert all(r.dev and r.dev["n"] == 2 and r.dev["source"].startswith("dev file") for r in teach.rounds)
    assert teach.rounds[0].folds is not None and teach.rounds[1].folds is None  # the last round mines nothing


def test_resume_after_a_kill_inside_a_fold(folds_config: TeachConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    folds_config.train.epochs = 2
    real, calls = teach_loop.train, []

    def dies_in_the_second_fold(base, items, exam, config, out, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(out)
        if out.name == "fold-1" and len([c for c in calls if c.name == "fold-1"]) == 1:
            raise KeyboardInterrupt
        return real(base, items, exam, config, out, **kw)

    monkeypatch.setattr(teach_loop, "train", dies_in_the_second_fold)
    with pytest.raises(KeyboardInterrupt):
        run(folds_config)
    assert (folds_config.out / "round-0" / "folds" / "fold-0" / "answers.json").exists()
    before = len(calls)
    assert "round 0, stage dev" in Teach(folds_config, resume=True, progress=False).resume_point()
    run(folds_config, resume=True)
    again = [c.name for c in calls[before:]]
    assert "fold-0" not in again[:2] and again[0] == "fold-1"  # fold 0 is not trained again
    assert again.count("round-0") == 0  # nor the round-0 student


def test_a_control_with_written_rows_is_scored_out_of_fold_on_the_human_rows_only(folds_config: TeachConfig,
                                                                                  tmp_path: Path) -> None:
    """A run of 0 rounds on the seed plus teacher-written rows (tagged with a `strategy`) gets the dev score of
    a teaching run: only the human-labelled rows are held out, the written ones are in every fold's training."""
    rows = [json.loads(line) for line in folds_config.seed.read_text().splitlines()]
    written = [{"id": f"w{i}", "text": t, "label": y, "strategy": "untargeted"}
               for i, (t, y) in enumerate([("fine food", "positive"), ("bad film", "negative")])]
    config = folds_config.model_copy(update={"seed": write_jsonl(tmp_path / "control.jsonl", rows + written),
                                             "rounds": 0, "out": tmp_path / "control"})
    config.train.epochs = 2
    teach = run(config)
    assert teach.rounds[0].folds is None  # a run of 0 rounds scores nothing out of fold by itself
    trained: list[list[str]] = []
    real = teach_loop.train

    def spy(base, items, exam, settings, out, **kw):  # noqa: ANN001, ANN003, ANN202
        trained.append([i.id for i in items])
        return real(base, items, exam, settings, out, **kw)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(teach_loop, "train", spy)
        folds = Teach(config, resume=True, progress=False).out_of_fold(0)
    from magister.teach.rundir import RunDir

    saved = json.loads(RunDir(config.out).round(0).folds.read_text())
    assert folds["n"] == len(TEXTS) and set(saved["answers"]) == {f"s{i}" for i in range(len(TEXTS))}
    assert len(trained) == 3 and all({"w0", "w1"} <= set(ids) for ids in trained)
    assert all(len(ids) == len(TEXTS) - 4 + 2 for ids in trained)
    assert Teach(config, resume=True, progress=False).out_of_fold(0) == folds  # finished folds are read back
    with pytest.raises(ConfigError, match="no round 3"):
        Teach(config, resume=True, progress=False).out_of_fold(3)
