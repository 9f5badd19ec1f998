"""The loop's mechanics with the tiny in-code student and the scripted teacher: seconds per run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from magister.errors import ConfigError
from magister.models.mock import MockModel
from magister.store import Store
from magister.teach import Teach, TeachConfig
from magister.teach import loop as teach_loop
from magister.teach import report as teach_report
from magister.web import report as web_report

from helpers import label_of, scripted

pytestmark = pytest.mark.hf


def run(config: TeachConfig, teacher: MockModel | None = None, **kw) -> Teach:  # noqa: ANN003
    teach = Teach(config, models={"mock:teacher": teacher or MockModel("mock:teacher", respond=scripted)},
                  progress=False, **kw)
    teach.run()
    return teach


def test_rounds_mine_write_filter_accumulate_and_report(config: TeachConfig) -> None:
    teach = run(config)
    rounds = teach.rounds
    assert [r.round for r in rounds] == [0, 1, 2] and teach.stopped == "round limit (2)"
    assert rounds[0].data == 8 and rounds[0].exam["n"] == 8 and rounds[0].vs_round0 is None
    for before, r in zip(rounds, rounds[1:]):
        assert r.done == list(teach_loop.STAGES)
        assert r.mined == len(json.loads((config.out / f"round-{r.round}" / "mined.json").read_text()))
        assert r.generated == r.deduped + r.rejected + r.kept
        assert r.data == before.data + r.kept  # kept examples accumulate
        assert set(r.by_strategy) == {"similar", "rephrase", "explain", "new"}
        assert sum(s["kept"] for s in r.by_strategy.values()) == r.kept
        assert r.vs_round0 is not None and r.vs_round0["test"] == "mcnemar-exact"
        assert r.teacher_calls > 0 and r.teacher_tokens > 0
        assert (config.out / f"round-{r.round}" / "model" / "config.json").exists()
        assert (config.out / f"round-{r.round}" / "adapter" / "adapter_config.json").exists()
    drafts = json.loads((config.out / "round-1" / "drafts.json").read_text())
    assert {d["strategy"] for d in drafts} == {"similar", "rephrase", "explain", "new"}
    assert any(d["reason"] and d["reason"].startswith("duplicate of") for d in drafts)
    data = [json.loads(line) for line in (config.out / "round-1" / "data.jsonl").read_text().splitlines()]
    assert any(d["meta"].get("rationale") for d in data)  # explain adds rationales
    report = teach.report()
    assert report["baseline"]["n"] == 8 and report["teacher_calls"] == sum(r.teacher_calls for r in rounds)
    paths = web_report.write(report, config.out)
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    page = paths["html"].read_text()
    assert "Round 1" in page and '<svg class="chart"' in page  # the same template as `magister view`'s /teach
    assert page.count('data-outcome="') == len(drafts) + len(json.loads((config.out / "round-2" / "drafts.json")
                                                                        .read_text()))  # every example, none cut
    assert json.loads(paths["json"].read_text())["stopped"] == "round limit (2)"


def test_the_trained_student_loads_with_the_hf_backend(config: TeachConfig) -> None:
    from magister.models.base import load_model

    config.rounds = 0
    run(config)
    model = load_model(f"hf:{config.out / 'round-0' / 'model'}")
    assert model.supports_choices


def test_a_spent_budget_stops_the_loop(config: TeachConfig) -> None:
    config.budget.calls = 1
    teach = run(config)
    assert [r.round for r in teach.rounds] == [0, 1]
    assert teach.rounds[1].budget_hit and teach.stopped == "teacher budget spent"
    record = teach.rounds[1]
    assert record.verifier is not None  # one batch of writing, the verifier's check, then verifying:
    assert record.teacher_calls <= 8 + record.verifier["calls"] + record.generated


def test_patience_stops_when_the_dev_score_stalls(config: TeachConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    config.patience, config.rounds, config.select = 1, 3, "dev"

    def flat(self: Teach, number: int, directory: Path) -> dict:
        return {"k": 4, "epochs": 1, "n": 8, "correct": 4, "accuracy": 0.5, "errors": 4, "per_fold": []}

    monkeypatch.setattr(Teach, "_folds", flat)
    teach = run(config)
    assert [r.round for r in teach.rounds] == [0, 1]
    assert teach.stopped == "no better dev score for 1 round(s)"
    assert teach.final().round == 0  # a tie goes to the earlier round


def test_a_teacher_whose_examples_are_all_rejected_stops_the_loop(config: TeachConfig) -> None:
    teach = run(config, MockModel("mock:teacher", respond=lambda r: "I cannot help with that."))
    assert [r.round for r in teach.rounds] == [0, 1] and teach.stopped == "no new example was kept"
    stopped = teach.rounds[1]
    assert stopped.mined > 0 and stopped.kept == 0 and stopped.teacher_calls > 0 and not stopped.exam
    assert teach.final() is teach.rounds[0]
    assert "not trained" in teach_report._row_cells(teach.report()["rounds"][1])[2]
    assert teach_report.write(teach.report(), config.out)["png"].exists()


def test_replay_needs_no_teacher_and_weighs_missed_items_more(config: TeachConfig) -> None:
    config.strategies, config.rounds = ["replay"], 1
    silent = MockModel("mock:teacher", respond=lambda r: "I cannot help with that.")
    teach = run(config, silent)
    record = teach.rounds[1]
    assert record.mined > 0 and record.kept == record.mined == record.by_strategy["replay"]["kept"]
    assert record.teacher_calls == 0 and silent.calls == 0 and record.exam
    data = [json.loads(line) for line in (config.out / "round-1" / "data.jsonl").read_text().splitlines()]
    mined = {m["id"] for m in json.loads((config.out / "round-1" / "mined.json").read_text())}
    copies = [d for d in data if d["meta"].get("strategy") == "replay"]
    assert sorted(d["meta"]["source"] for d in copies) == sorted(mined)


def test_an_untrusted_verifier_is_checked_and_not_used(config: TeachConfig) -> None:
    config.rounds, config.verifier = 1, "mock:first"  # always the first label: no better than the majority
    teach = Teach(config, models={"mock:teacher": MockModel("mock:teacher", respond=scripted),
                                  "mock:first": MockModel("mock:first")}, progress=False)
    teach.run()
    record = teach.rounds[1]
    assert record.verifier is not None and not record.verifier["trusted"]
    assert "verifier" not in record.rejections and record.kept > 0
    assert "not trusted" in str(teach_report.table(teach.report()).caption)


def test_neighbours_verify_with_no_teacher_call(config: TeachConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from functools import partial

    import numpy as np

    from magister.synth import verify as verify_module

    def polarity(text: str, others: list[str]) -> np.ndarray:  # an embedding that sees the sentiment words
        return np.array([float(label_of(text) == label_of(o)) for o in others])

    monkeypatch.setattr(teach_loop, "Neighbours", partial(verify_module.Neighbours, similarity=polarity))
    config.rounds, config.verify = 1, "neighbours"
    teacher = MockModel("mock:teacher", respond=lambda r: scripted(r) + f"\nInput: terrible meal {r.seed}")
    teach = run(config, teacher)
    record = teach.rounds[1]
    assert record.verifier is not None and record.verifier["calls"] == 0 and record.verifier["n"] == 8
    assert record.verifier["trusted"]  # 8 of 8 seed items right, leave-one-out
    assert "(the 5 nearest seed items in embedding space): 100% right" in teach_report.verifier_note(teach.report())
    assert record.teacher_calls == teacher.calls  # writing only: the neighbours cost no call
    drafts = json.loads((config.out / "round-1" / "drafts.json").read_text())
    vetoed = [d for d in drafts if d["reason"] and d["reason"].startswith("verifier answered")]
    assert vetoed and all(label_of(d["input"]) != d["reference"] for d in vetoed)  # the teacher's mislabels
    kept = [d for d in drafts if d["reason"] is None]
    assert kept and all(d["extra"]["verifier"]["agrees"] for d in kept)


def test_mining_takes_seed_items_unless_told_to_take_all(config: TeachConfig,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sat: list[list[str]] = []
    real = teach_loop.sit

    def spy(exam, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        sat.append([i.id for i in exam.items])
        return real(exam, *args, **kwargs)

    monkeypatch.setattr(teach_loop, "sit", spy)
    run(config)
    mined_exams = [ids for ids in sat if ids and ids[0].startswith("s")]
    assert mined_exams and all(all(i.startswith("s") for i in ids) for ids in mined_exams)
    sat.clear()
    config.mine, config.out = "all", config.out.with_name("all")
    run(config)
    assert any(i.startswith("r1-") for ids in sat for i in ids)


def test_an_existing_run_needs_resume_and_the_same_config(config: TeachConfig) -> None:
    config.rounds = 0
    run(config)
    with pytest.raises(ConfigError, match="--resume"):
        Teach(config)
    config.per_item = 3
    with pytest.raises(ConfigError, match="another configuration"):
        Teach(config, resume=True)


STAGE_FUNCTIONS = {"mine": "_mine", "write": "_write", "filter": "_filter", "exam": "_sit"}


@pytest.mark.parametrize("stage", ["mine", "write", "filter", "train", "exam"])
def test_resume_after_a_kill_repeats_no_finished_work(stage: str, config: TeachConfig, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config.rounds = 1
    trained: list[str] = []
    real_train = teach_loop.train

    def counting_train(base, items, exam, cfg, out, **kw):  # noqa: ANN001, ANN003, ANN202
        trained.append(out.name)
        return real_train(base, items, exam, cfg, out, **kw)

    monkeypatch.setattr(teach_loop, "train", counting_train)
    clean_teacher = MockModel("mock:teacher", respond=scripted)
    clean = run(config.model_copy(update={"out": tmp_path / "clean"}), clean_teacher,
                store=Store(tmp_path / "clean.db"))
    clean_trainings = list(trained)
    trained.clear()

    store_path = tmp_path / "killed.db"
    teacher = MockModel("mock:teacher", respond=scripted)
    killed_in_round_1 = {"done": False}
    if stage == "train":
        def kill_train(base, items, exam, cfg, out, **kw):  # noqa: ANN001, ANN003, ANN202
            if out.name == "round-1" and not killed_in_round_1["done"]:
                killed_in_round_1["done"] = True
                raise KeyboardInterrupt
            return counting_train(base, items, exam, cfg, out, **kw)
        monkeypatch.setattr(teach_loop, "train", kill_train)
    else:
        name = STAGE_FUNCTIONS[stage]
        real = getattr(Teach, name)

        def kill(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if len(self.rounds) == 1 and not killed_in_round_1["done"]:  # in round 1
                killed_in_round_1["done"] = True
                raise KeyboardInterrupt
            return real(self, *args, **kwargs)
        monkeypatch.setattr(Teach, name, kill)

    with pytest.raises(KeyboardInterrupt):
        run(config, teacher, store=Store(store_path))
    assert killed_in_round_1["done"]
    resumed = run(config, teacher, resume=True, store=Store(store_path))
    assert trained == clean_trainings  # round 0 and round 1 trained once each
    assert teacher.calls == clean_teacher.calls  # no teacher call repeated
    assert [r.exam["accuracy"] for r in resumed.rounds] == [r.exam["accuracy"] for r in clean.rounds]
    assert [r.kept for r in resumed.rounds] == [r.kept for r in clean.rounds]
    assert resumed.report()["teacher_calls"] == clean.report()["teacher_calls"]


def test_probe_mining_has_the_teacher_write_an_exam_the_student_sits(config: TeachConfig) -> None:
    config.rounds, config.mine, config.strategies = 1, "probe", ["similar"]
    config.probe_size, config.probe_per_call = 6, 3
    teach = run(config)
    record = teach.rounds[1]
    probe = [json.loads(line) for line in (config.out / "round-1" / "probe.jsonl").read_text().splitlines()]
    assert probe and all(p["id"].startswith("r1-probe-") for p in probe)
    assert record.probe is not None and record.probe["kept"] == len(probe)
    assert record.probe["missed"] == record.mined and 0 <= record.probe["student_accuracy"] <= 1
    assert record.probe["contamination"]["excluded_items"] == 8  # checked against the held-out exam
    mined = json.loads((config.out / "round-1" / "mined.json").read_text())
    assert all(m["id"].startswith("r1-probe-") for m in mined)
    data = [json.loads(line) for line in (config.out / "round-1" / "data.jsonl").read_text().splitlines()]
    kept_probe = [d for d in data if d["meta"].get("strategy") == "probe"]
    assert sorted(d["meta"]["source"] for d in kept_probe) == sorted(m["id"] for m in mined)
    assert record.by_strategy["probe"]["kept"] == len(mined)
    assert record.teacher_calls >= record.probe["calls"] > 0


def test_resume_says_where_it_picks_up(config: TeachConfig) -> None:
    config.rounds, config.strategies = 1, ["replay"]
    run(config)
    state = json.loads((config.out / "round-1" / "round.json").read_text())
    state["done"] = ["mine", "write"]
    (config.out / "round-1" / "round.json").write_text(json.dumps(state))
    assert Teach(config, resume=True).resume_point() == "round 1, stage filter"


def test_train_seeds_compare_the_last_round_with_round_0_over_seeds(config: TeachConfig) -> None:
    from magister.teach.seeds import run_seeds

    config.rounds, config.strategies = 1, ["replay"]
    made = []

    def make(one: TeachConfig, again: bool) -> Teach:
        made.append(one.train.seed)
        return Teach(one, resume=again, models={"mock:teacher": MockModel("mock:teacher", respond=scripted)},
                     progress=False)

    analysis = run_seeds(config, [0, 1], make=make)
    assert made == [0, 1] and (config.out / "seed-1" / "round-1" / "grades.json").exists()
    assert analysis["seeds"] == 2 and analysis["items"] == 8
    assert len(analysis["final"]["per_seed"]) == 2 and analysis["final_vs_round0"]["training_variance"]
    again = run_seeds(config, [0, 1], make=make)  # finished seeds are read back, not retrained
    assert again == analysis


def test_probe_near_misses_add_the_least_certain_right_answers(config: TeachConfig) -> None:
    config.rounds, config.mine, config.strategies = 1, "probe", ["similar"]
    config.probe_size, config.probe_per_call, config.probe_near_misses = 6, 3, 1.0
    teach = run(config)
    probe = teach.rounds[1].probe
    assert probe is not None and probe["missed"] + probe["near_misses"] == teach.rounds[1].mined == probe["kept"]
    mined = json.loads((config.out / "round-1" / "mined.json").read_text())
    labels = {"negative", "positive"}
    assert all(m["wrong"] in labels for m in mined)  # a near miss carries the runner-up label


def test_margin_is_the_reference_above_the_runner_up() -> None:
    from magister.types import Answer, Item, Kind

    item = Item(id="x", input="t", reference="b", kind=Kind.classification, labels=["a", "b", "c"])
    answer = Answer(item_id="x", text="b", choice_logprobs={"a": -2.0, "b": -0.5, "c": -1.0}, request_key="k")
    assert teach_loop.margin(item, answer) == (0.5, "c")
    assert teach_loop.margin(item, answer.model_copy(update={"choice_logprobs": None})) == (None, "")
