"""The teaching loop: fine-tune, find what the student gets wrong, have the teacher write more, repeat.

    round 0   fine-tune the student on the seed set; dev score; it sits the held-out exam
    round r   mine: the errors of round r-1 against human labels  -> mined
                (`folds`: k fold students, each trained on round r-1's data without one fold of
                the seed, sat that fold; `seed`/`all`: in-sample; `probe`: a teacher-written exam)
              each strategy has the teacher write new inputs for the human label -> drafts
              contamination (exact / n-gram vs the exam), dedupe against all data, verify -> kept
              retrain on seed + everything kept so far; dev score; the student sits the held-out exam

Trust flows from the human labels: errors are found on items a person labelled and a student
did not train on, the teacher writes inputs for the label the person gave, and the verifier
decides only if it beats the out-of-fold student on human-labelled items (otherwise it may
only veto, at a confidence calibrated on the seed).

The exam never drives a decision: `patience` and the choice of the final round read the dev
score (out-of-fold accuracy on the seed, or a `dev:` file). It stops at the round limit, when
the teacher budget is spent, or when the dev score has not improved for `patience` rounds.
Every stage of every round (and every fold) writes its result to the run directory before the
next starts, and every model call goes through the response cache: `--resume` after a kill
skips finished stages, and no teacher call, training run or exam that finished is repeated.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from magister.cache import ask
from magister.errors import ConfigError
from magister.exams.load import FieldMap, load_exam, pick_fewshot
from magister.jsonl import lines, write_atomic, write_json
from magister.models.base import Model, load_model, redact
from magister.progress import progress_bar
from magister.sit import sit
from magister.stats import wilson
from magister.stats.paired import compare
from magister.store import Store, user_dir
from magister.synth.contamination import Contamination, contamination_summary
from magister.synth.dedupe import dedupe
from magister.synth.drafts import Draft, as_item, reason_kind
from magister.synth.verify import Neighbours, check_verifier, verify
from magister.teach.config import TeachConfig
from magister.teach.rundir import RoundDir, RunDir
from magister.teach.strategies import STRATEGIES, Mined
from magister.teach.strategies.base import job_seed
from magister.teach.train import base_model_dir, train
from magister.types import Exam, Item, Request

STAGES = ("mine", "write", "filter", "train", "dev", "exam")


@dataclass
class Round:
    """What one round did: its data counts, its exam score, and what each stage cost."""

    round: int
    done: list[str] = field(default_factory=list)
    mined: int = 0
    generated: int = 0
    deduped: int = 0
    rejected: int = 0
    kept: int = 0
    data: int = 0
    by_strategy: dict[str, dict[str, int]] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    teacher_calls: int = 0
    teacher_tokens: int = 0
    budget_hit: bool = False
    train: dict[str, Any] = field(default_factory=dict)
    exam: dict[str, Any] = field(default_factory=dict)  # run_id, accuracy, ci_low, ci_high, n, correct
    vs_round0: dict[str, Any] | None = None
    verifier: dict[str, Any] | None = None  # the verifier's check on seed items: trusted, veto only, or not used
    dev: dict[str, Any] | None = None  # the dev score of this round's data: source, accuracy, n, correct
    folds: dict[str, Any] | None = None  # out-of-fold students on this round's data: accuracy, errors per fold
    contamination: dict[str, Any] | None = None  # drafts rejected as copies of the exam, with a sample
    rejected_by_label: dict[str, dict[str, int]] = field(default_factory=dict)
    probe: dict[str, Any] | None = None  # `mine: probe`: what the teacher wrote, and how the student did on it
    wall_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stored_config(config: TeachConfig) -> dict[str, Any]:
    """The config as it is written to state.json and reports: model specs without URL credentials."""
    data = json.loads(config.model_dump_json(exclude={"ray"}))  # how exams are sat: a run resumes either way
    for key in ("teacher", "verifier", "student"):
        if data.get(key):
            data[key] = redact(data[key])
    return data


def write_items(path: Path, items: list[Item]) -> None:
    write_atomic(path, "".join(item.model_dump_json() + "\n" for item in items))


def read_items(path: Path) -> list[Item]:
    return [Item.model_validate_json(line) for line in lines(path.read_text()) if line.strip()]


class TeacherAccount:
    """The teacher model (and verifier) and what they have spent against the budget, loaded on first use (a resumed run may never need it)."""

    def __init__(self, config: TeachConfig, store: Store) -> None:
        self.config, self.store = config, store
        self.models: dict[str, Model] = {}
        self.calls = self.tokens = 0

    def model(self, spec: str) -> Model:
        if spec not in self.models:
            self.models[spec] = load_model(spec)
        return self.models[spec]

    def spent(self) -> bool:
        budget = self.config.budget
        return bool((budget.calls and self.calls >= budget.calls) or (budget.tokens and self.tokens >= budget.tokens))

    def ask(self, requests: list[Request]) -> list[str]:
        model = self.model(self.config.teacher)
        _, completions, _ = ask(model, self.store, requests)
        self.calls += len(completions)
        self.tokens += sum(c.prompt_tokens + c.completion_tokens for c in completions)
        return [c.text for c in completions]

    def close(self) -> None:
        for model in self.models.values():
            model.close()


def teach_name(store: Store, out: Path) -> str:
    """The name a teaching run is listed under (`magister view`, /teach/NAME): its folder's name, made unique."""
    taken = {name: path for name, path, _ in store.teach_runs()}
    base, number = out.resolve().name or "teach", 1
    name = base
    while name in taken and taken[name] != out.resolve():
        number += 1
        name = f"{base}-{number}"
    return name


class Teach:
    """One teaching run in `config.out`; `run()` does (or resumes) it and returns the rounds."""

    def __init__(self, config: TeachConfig, *, resume: bool = False, store: Store | None = None,
                 console: Console | None = None, progress: bool = True, models: dict[str, Model] | None = None) -> None:
        self.config = config
        self.out = config.out
        self.dir = RunDir(config.out)
        self.console = console or Console(stderr=True)
        self.progress = progress
        state = self.dir.state
        if state.exists() and not resume:
            raise ConfigError(f"{self.out} already holds a teach run: pass --resume to continue it, "
                              "or choose another --out")
        fields = FieldMap(input=config.fields.input, reference=config.fields.reference)
        self.seed = load_exam(config.seed, fields, name=f"{config.exam.stem}-seed")
        self.exam = load_exam(config.exam, fields, limit=config.exam_limit)
        self.dev = load_exam(config.dev, fields, name=f"{config.exam.stem}-dev") if config.dev else None
        self._check_compatible()
        if resume and state.exists():
            saved = json.loads(state.read_text())
            if saved["config"] != stored_config(config):
                raise ConfigError(f"{self.out} was started with another configuration; --resume needs the same one")
        self.out.mkdir(parents=True, exist_ok=True)
        self.store = store or Store()
        self.store.put_teach_run(teach_name(self.store, self.out), self.out)
        self.teacher = TeacherAccount(config, self.store)
        self.teacher.models.update(models or {})  # models given by spec (tests pass a scripted teacher)
        self.resuming = resume and state.exists()
        self.rounds: list[Round] = []
        self.stopped: str | None = None
        self.baseline: dict[str, Any] | None = None

    def _check_compatible(self) -> None:
        kinds = {i.kind for i in self.seed.items} | {i.kind for i in self.exam.items}
        if len(kinds) > 1:
            raise ConfigError(f"seed and exam mix item kinds ({', '.join(sorted(k.value for k in kinds))}); "
                              "teach needs one kind")
        labels = sorted({label for i in self.seed.items + self.exam.items for label in i.labels or ()})
        if labels:  # one label set for both, even when a slice of either lacks a label
            for exam in (self.seed, self.exam, *([self.dev] if self.dev else [])):
                exam.items = [i.model_copy(update={"labels": labels}) for i in exam.items]
        wanted = set(self.config.strategies)
        if self.exam.items[0].kind.value == "multiple_choice" and wanted & {"similar", "new", "contrast", "pairs"}:
            raise ConfigError("strategies 'contrast', 'pairs', 'similar' and 'new' cannot write multiple-choice "
                              "options yet; use 'rephrase' and 'explain' for multiple-choice seeds")

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> list[Round]:
        config = self.config
        if self.resuming:
            self.console.print(f"Resuming {self.out} at {self.resume_point()}.")
        self._save_state()
        self.base = base_model_dir(config.student, user_dir() / "students")
        try:
            self.baseline = self._baseline()
            best, since_best = -1.0, 0
            for number in range(config.rounds + 1):
                record = self._load_round(number)
                if number > 0 and "mine" not in record.done and self.teacher.spent():
                    self.stopped = "teacher budget spent"
                    break
                if not self._round(record):
                    self.rounds.append(record)  # what it mined, wrote and rejected still counts
                    break
                self.rounds.append(record)
                self._save_state()
                score = record.dev["accuracy"] if record.dev else None  # the exam is only reported
                if score is not None:
                    best, since_best = (score, 0) if score > best else (best, since_best + 1)
                if config.patience and since_best >= config.patience:
                    self.stopped = f"no better dev score for {config.patience} round(s)"
                    break
                if record.budget_hit:
                    self.stopped = "teacher budget spent"
                    break
            else:
                self.stopped = f"round limit ({config.rounds})"
            self._save_state()
        finally:
            self.teacher.close()
        return self.rounds

    def _round(self, record: Round) -> bool:
        """Run the stages of one round not yet done; False when the round has nothing to train on."""
        number, directory = record.round, self._dir(record.round)
        directory.path.mkdir(parents=True, exist_ok=True)
        previous = self._dir(number - 1)
        if number == 0:
            record.done = sorted(set(record.done) | {"mine", "write", "filter"})
            if not (directory.data).exists():
                write_items(directory.data, self.seed.items)
        for stage in STAGES:
            if stage in record.done:
                continue
            started = time.perf_counter()
            if stage == "mine":
                if self.config.mine == "probe":
                    mined = self._mine_probe(record, previous, read_items(previous.data))
                elif self.config.mine == "folds":
                    mined = self._mine_folds(previous)
                else:
                    mined = self._mine(previous.model, read_items(previous.data))
                write_json(directory.mined, [{"id": m.item.id, "input": m.item.input, "gold": m.item.reference,
                                                       "wrong": m.wrong, "runner_up": m.runner_up, "margin": m.margin}
                                                      for m in mined])
                record.mined = len(mined)
            elif stage == "write":
                drafts = self._write(self._read_mined(directory, previous), record)
                write_json(directory.drafts, [asdict(d) for d in drafts])
            elif stage == "filter":
                drafts = [Draft(**d) for d in json.loads((directory.drafts).read_text())]
                kept = self._filter(drafts, read_items(previous.data), record, self._probe(directory))
                write_json(directory.drafts, [asdict(d) for d in drafts])
                write_items(directory.data, read_items(previous.data) + kept)
            elif stage == "train":
                data = read_items(directory.data)
                record.data = len(data)
                if number > 0 and record.kept == 0:
                    self.stopped = "no new example was kept"
                    return False
                base = previous.model if number > 0 and self.config.retrain == "continue" else self.base
                report = train(base, data, self._prompt_exam(), self.config.train, directory.path,
                               console=self.console, progress=self.progress)
                record.train = {k: v for k, v in report.to_dict().items() if k != "losses"}
                write_json(directory.losses, report.losses)
            elif stage == "dev":
                record.dev, record.folds = self._dev(number, directory)
            elif stage == "exam":
                record.exam, grades = self._sit(directory.model, self.exam)
                write_json(directory.grades, grades)
                if number > 0:
                    first = json.loads((self._dir(0).grades).read_text())
                    shared = [i for i in grades if i in first]
                    record.vs_round0 = compare([grades[i] for i in shared], [first[i] for i in shared],
                                               binary=True).to_dict()
            record.wall_s[stage] = record.wall_s.get(stage, 0.0) + time.perf_counter() - started
            record.done.append(stage)
            self._save_round(record)
        return True

    # -- stages ------------------------------------------------------------------------------

    def _baseline(self) -> dict[str, Any]:
        """The untrained student on the exam (zero-shot), once per run directory."""
        path = self.dir.baseline
        if path.exists():
            return json.loads(path.read_text())
        started = time.perf_counter()
        summary, grades = self._sit(self.base, self.exam)
        summary["wall_s"] = time.perf_counter() - started
        write_json(self.dir.baseline_grades, grades)
        write_json(path, summary)
        return summary

    def _sit(self, model_dir: Path, exam: Exam) -> tuple[dict[str, Any], dict[str, bool]]:
        """The student in `model_dir` sits the held-out exam (or the dev file): its score and per-item grades."""
        summary, graded = self._graded(model_dir, exam)
        grades = {a.item_id: bool(g.correct) for a, g in graded}
        return ({"run_id": summary.run_id, "accuracy": summary.accuracy, "ci_low": summary.ci_low,
                 "ci_high": summary.ci_high, "n": summary.n, "correct": summary.correct}, grades)

    def _mine(self, model_dir: Path, data: list[Item]) -> list[Mined]:
        """The training items the student gets wrong (seed items only, unless `mine: all`)."""
        pool = data if self.config.mine == "all" else [i for i in data if "strategy" not in i.meta]
        exam = Exam(name=self.seed.name if self.config.mine == "seed" else f"{self.seed.name}-all", items=pool,
                    instructions=self.exam.instructions)
        return self._missed(model_dir, exam)[0]

    def _graded(self, model_dir: Path, exam: Exam) -> tuple[Any, list[tuple[Any, Any]]]:
        """The student in `model_dir` sits `exam` (not the held-out exam): its run summary and graded answers."""
        if self.config.ray:
            from magister.models.ray_pool import RayPool

            model: Model = RayPool(f"hf:{model_dir}")
        else:
            model = load_model(f"hf:{model_dir}")
        try:
            summary = sit(exam, model, self.store, console=self.console, progress=self.progress)
            return summary, self.store.answers(summary.run_id)
        finally:
            model.close()

    def _missed(self, model_dir: Path, exam: Exam) -> tuple[list[Mined], dict[str, Any]]:
        """The student in `model_dir` sits `exam`: the items it got wrong with its answers, and the run."""
        summary, graded = self._graded(model_dir, exam)
        items = {i.id: i for i in exam.items}
        missed = [Mined(items[a.item_id], a.text) for a, g in graded if not g.correct]
        sat = {"student_accuracy": summary.accuracy, "student_run": summary.run_id, "missed": len(missed),
               "near_misses": 0}
        near = int(round(self.config.probe_near_misses * len(exam.items))) if self.config.mine == "probe" else 0
        if near > len(missed):  # right, but only just: the runner-up stands in for the wrong answer
            right = sorted((m, a.item_id, runner_up) for a, g in graded if g.correct
                           for m, runner_up in [margin(items[a.item_id], a)] if m is not None)
            missed += [Mined(items[item_id], runner_up) for _, item_id, runner_up in right[:near - len(missed)]]
            sat["near_misses"] = len(missed) - sat["missed"]
        return missed, sat

    # -- out of fold: errors against human labels, and the dev score ------------------------

    def _needs_dev_score(self) -> bool:
        """Whether a decision reads the dev score: choosing the final round among several, or patience."""
        return self.config.rounds > 0 and (self.config.select == "dev" or self.config.patience is not None)

    def _dev(self, number: int, directory: RoundDir) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """This round's dev score (a `dev:` file, or out-of-fold on the seed), and its fold students' results
        when the next round mines them. Nothing here reads the held-out exam."""
        config, scored = self.config, self._needs_dev_score()
        mines_next = config.mine == "folds" and number < config.rounds
        folds = self._folds(number, directory) if mines_next or (scored and self.dev is None) else None
        if self.dev is not None and scored:
            summary, _ = self._sit(directory.model, self.dev)
            return {"source": f"dev file {config.dev.name if config.dev else ''}", **summary}, folds
        if folds is not None and scored:
            low, high = wilson(folds["correct"], folds["n"])
            return {"source": f"{folds['k']}-fold out-of-fold accuracy on the seed", "accuracy": folds["accuracy"],
                    "ci_low": low, "ci_high": high, "n": folds["n"], "correct": folds["correct"]}, folds
        return None, folds

    def out_of_fold(self, number: int) -> dict[str, Any]:
        """Round `number`'s data scored out of fold (`_folds`), also on a finished run or one of 0 rounds: how
        a configuration that never mines (a control trained on the seed plus other data) gets the same dev
        score as a teaching run, to be compared with it on human labels, not on the exam."""
        directory = self._dir(number)
        if not directory.data.exists():
            raise ConfigError(f"{self.out} has no round {number} to score out of fold")
        self.base = base_model_dir(self.config.student, user_dir() / "students")
        return self._folds(number, directory)

    def _folds(self, number: int, directory: RoundDir) -> dict[str, Any]:
        """k students, each trained on this round's data without one fold of the seed (and without the
        synthetic items written from that fold's items), sit their held-out fold. Only human-labelled items
        are held out: a seed row that names a `strategy` (written by a teacher) is trained on in every fold.
        Each finished fold is written to `folds/fold-N/answers.json`, so a resume after a kill inside a fold
        repeats no other fold."""
        config = self.config
        data = read_items(directory.data)
        seed = [i for i in data if "strategy" not in i.meta]
        fold_of = assign_folds(seed, config.folds)
        epochs = config.fold_epochs or config.train.epochs
        settings = config.train.model_copy(update={"epochs": epochs})
        answers: dict[str, dict[str, Any]] = {}
        for fold in range(config.folds):
            where = directory.fold(fold)
            done = where.answers
            if not done.exists():
                held = {i.id for i in seed if fold_of[i.id] == fold}
                items = [i for i in data if i.id not in held and i.meta.get("source") not in held]
                train(self.base, items, self._prompt_exam(), settings, where.path, console=self.console,
                      progress=self.progress)
                exam = Exam(name=f"{self.seed.name}-r{number}-fold{fold}", items=[i for i in seed if i.id in held],
                            instructions=self.exam.instructions)
                _, graded = self._graded(where.model, exam)
                by_id = {i.id: i for i in exam.items}
                write_json(done, {a.item_id: fold_answer(by_id[a.item_id], a, bool(g.correct), fold)
                                  for a, g in graded})
                for heavy in (where.model, where.adapter):  # the answers are what the loop needs; 0.5 GB a fold
                    shutil.rmtree(heavy, ignore_errors=True)
            answers.update(json.loads(done.read_text()))
        correct = sum(a["correct"] for a in answers.values())
        per_fold = [{"fold": f, "n": sum(a["fold"] == f for a in answers.values()),
                     "errors": sum(a["fold"] == f and not a["correct"] for a in answers.values())}
                    for f in range(config.folds)]
        result = {"k": config.folds, "epochs": epochs, "n": len(answers), "correct": correct,
                  "accuracy": correct / len(answers) if answers else 0.0, "errors": len(answers) - correct,
                  "per_fold": per_fold}
        write_json(directory.folds, {**result, "answers": answers})
        return result

    def _mine_folds(self, previous: RoundDir) -> list[Mined]:
        """The seed items the last round's fold students got wrong: real errors against a person's label."""
        saved = json.loads((previous.folds).read_text())["answers"]
        items = {i.id: i for i in read_items(previous.data)}
        return [Mined(items[item_id], a["answer"], a.get("runner_up", ""), a.get("margin"))
                for item_id, a in saved.items() if not a["correct"] and item_id in items]

    def _student_bar(self, number: int) -> float | None:
        """The out-of-fold student's accuracy the verifier must beat: the latest fold result before this round."""
        for earlier in range(number - 1, -1, -1):
            path = self._dir(earlier).folds
            if path.exists():
                return float(json.loads(path.read_text())["accuracy"])
        return None

    def _mine_probe(self, record: Round, previous: RoundDir, data: list[Item]) -> list[Mined]:
        """The teacher writes a fresh probe exam (weighted to the labels missed last round); the student
        sits it; the probe items it gets wrong are mined, with the teacher's reference."""
        from magister.synth.write import write_exam

        config, directory = self.config, self._dir(record.round)
        weights = None
        if (previous.probe).exists() and (previous.mined).exists():
            labels = {i.id: i.reference for i in read_items(previous.probe)}
            missed = Counter(labels[m["id"]] for m in json.loads((previous.mined).read_text())
                             if m["id"] in labels)
            weights = {label: 1.0 + missed[label] for label in self.seed.items[0].labels or ()} or None
        if not (directory.probe).exists():
            self.console.print(f"round {record.round}: the teacher writes a probe exam of {config.probe_size} items")
            verifier = self.teacher.model(config.verifier) if config.verifier else None
            written = write_exam(self.seed, self.teacher.model(config.teacher), self.store, n=config.probe_size,
                                 weights=weights, per_call=config.probe_per_call, avoid=data, exclude=self.exam.items,
                                 verify_mode=config.verify, verifier=verifier, samples=config.verify_samples,
                                 verify_shots=config.verify_shots, verify_check=config.verify_check,
                                 dedupe_method=config.dedupe if config.dedupe != "off" else "rouge",
                                 threshold=config.dedupe_threshold, temperature=config.temperature,
                                 seed=record.round, prefix=f"r{record.round}-probe-", console=self.console,
                                 progress=self.progress, selective=True,
                                 verify_bar=self._student_bar(record.round) if config.verify_gate == "student"
                                 else None)
            self.teacher.calls += written.calls
            self.teacher.tokens += written.tokens
            record.teacher_calls += written.calls
            record.teacher_tokens += written.tokens
            record.probe = {**written.summary(), "weights": weights}
            write_json(directory.probe_rejected, written.rejected())
            write_items(directory.probe, written.items)
            self._save_round(record)
        probe = self._probe(directory)
        exam = Exam(name=f"{self.seed.name}-probe-r{record.round}", items=probe, instructions=self.exam.instructions)
        mined, sat = self._missed(previous.model, exam)
        record.probe = {**(record.probe or {}), **sat}
        return mined

    def _probe(self, directory: RoundDir) -> list[Item]:
        path = directory.probe
        return read_items(path) if path.exists() else []

    def _read_mined(self, directory: RoundDir, previous: RoundDir) -> list[Mined]:
        items = {i.id: i for i in read_items(previous.data) + self._probe(directory)}
        return [Mined(items[m["id"]], m["wrong"], m.get("runner_up", ""), m.get("margin"))
                for m in json.loads((directory.mined).read_text())]

    def _write(self, mined: list[Mined], record: Round) -> list[Draft]:
        """Every strategy's jobs, in batches, until the teacher budget is spent."""
        config = self.config
        modules = [STRATEGIES[name] for name in config.strategies]
        drafts: list[Draft] = [d for m in modules if not getattr(m, "teacher", True) for d in m.drafts(mined)]
        if config.mine == "probe":  # a missed probe item is training data itself: written and verified already
            drafts.extend(Draft(input=m.item.input, reference=m.item.reference, strategy="probe", source=m.item.id,
                                replay=True) for m in mined)
        descriptions = tuple(config.label_descriptions.items())
        jobs = [dataclasses.replace(job, descriptions=descriptions) for m in modules if getattr(m, "teacher", True)
                for job in m.jobs(mined, self.seed.items, config.per_item, config.show_wrong_answer)]
        calls, tokens = self.teacher.calls, self.teacher.tokens
        size = self.teacher.model(config.teacher).batch_size
        with progress_bar(self.console, self.progress) as bar:
            task = bar.add_task(f"round {record.round}: teacher drafts", total=len(jobs), rate="")
            for begin in range(0, len(jobs), size):
                if self.teacher.spent():
                    record.budget_hit = True
                    break
                batch = jobs[begin:begin + size]
                requests = [Request(messages=STRATEGIES[j.strategy].prompt(j), temperature=config.temperature,
                                    seed=job_seed(j, record.round), max_tokens=64 + 48 * j.k) for j in batch]
                for job, text in zip(batch, self.teacher.ask(requests)):
                    drafts.extend(STRATEGIES[job.strategy].read(text, job))
                bar.update(task, advance=len(batch), rate=f"{len(drafts)} drafts")
        record.generated = len(drafts)
        record.teacher_calls += self.teacher.calls - calls
        record.teacher_tokens += self.teacher.tokens - tokens
        return drafts

    def _filter(self, drafts: list[Draft], data: list[Item], record: Round, probe: list[Item]) -> list[Item]:
        """Dedupe and verify the drafts; returns the kept ones as items."""
        config = self.config
        explained = {i.meta["source"] for i in data if i.meta.get("rationale")}
        for draft in drafts:
            if draft.rationale and draft.reason is None and draft.source in explained:
                draft.reason = "duplicate: item already explained"
            explained.add(draft.source) if draft.rationale else None
        index = Contamination(self.exam.items + (self.dev.items if self.dev else []), config.contamination_ngram)
        for draft in drafts:  # copies of the exam, exact or a long n-gram: not shared phrasing (that is dedupe's)
            hit = index.find(draft.input) if draft.reason is None and not draft.replay else None
            if hit:
                draft.reason = hit.reason()
        record.contamination = contamination_summary(drafts, self.exam.items + (self.dev.items if self.dev else []))
        record.deduped = dedupe(drafts, {i.id: i.input for i in data}, config.dedupe, config.dedupe_threshold)
        record.deduped += sum(d.reason == "duplicate: item already explained" for d in drafts)
        like = {i.id: i for i in data + probe}
        items = [(d, as_item(d, like[d.source], f"r{record.round}-{d.strategy}-{n}")) for n, d in enumerate(drafts)]
        mode = config.verify
        verifier = Neighbours(self.seed.items) if mode == "neighbours" and any(d.reason is None for d in drafts) \
            else self.teacher.model(config.verifier or config.teacher)
        shots = pick_fewshot(self.seed.items, config.verify_shots, seed=0)
        calls = tokens = 0
        veto_at: float | None = None
        needed = any(d.reason is None and not d.replay for d, _ in items)
        if mode != "off" and config.verify_check and needed:  # replays alone need no verifier
            bar = self._student_bar(record.round) if config.verify_gate == "student" else None
            trial = check_verifier(verifier, self.store, self.seed.items, shots, bar=bar)
            record.verifier = trial.to_dict()
            first = not any(r.verifier for r in self.rounds)  # later checks repeat the same (cached) calls
            calls, tokens = (trial.calls, trial.tokens) if first else (0, 0)
            if not trial.trusted:  # a verifier weaker than the student may only veto, where calibrated to
                veto_at = trial.veto_at if mode in ("teacher", "neighbours") else None
                mode = mode if veto_at is not None else "off"
        with progress_bar(self.console, self.progress) as bar:
            todo = sum(d.reason is None and not d.replay for d, _ in items) if mode != "off" else 0
            task = bar.add_task(f"round {record.round}: verifying", rate="",
                                total=todo * (config.verify_samples if mode == "majority" else 1))
            more_calls, more_tokens = verify(items, verifier, self.store, mode, config.verify_samples, shots,
                                             on_calls=lambda k: bar.advance(task, k), veto_at=veto_at)
        calls, tokens = calls + more_calls, tokens + more_tokens
        if (config.verifier or config.teacher) == config.teacher:  # the neighbours cost no call: 0 here
            self.teacher.calls += calls
            self.teacher.tokens += tokens
            record.teacher_calls += calls
            record.teacher_tokens += tokens
        kept = [item for d, item in items if d.reason is None]
        record.kept = len(kept)
        record.rejected = len(drafts) - len(kept) - record.deduped
        record.rejections = dict(Counter(reason_kind(d.reason) for d in drafts if d.reason))
        record.rejected_by_label = {label: dict(Counter(reason_kind(d.reason) for d in drafts
                                                        if d.reason and d.reference == label))
                                    for label in sorted({d.reference for d in drafts if d.reason})}
        record.by_strategy = {name: {"generated": sum(d.strategy == name for d in drafts),
                                     "kept": sum(d.strategy == name and d.reason is None for d in drafts)}
                              for name in [*config.strategies, *(["probe"] if config.mine == "probe" else [])]}
        return kept

    # -- state -------------------------------------------------------------------------------

    def resume_point(self) -> str:
        """Where a resumed run picks up: 'round N, stage S' (or that every round is done)."""
        if not (self.dir.baseline).exists():
            return "the untrained student's exam (baseline)"
        for number in range(self.config.rounds + 1):
            path = self._dir(number).record
            done = json.loads(path.read_text())["done"] if path.exists() else []
            todo = [stage for stage in STAGES if stage not in done and not (number == 0 and stage in STAGES[:3])]
            if todo:
                return f"round {number}, stage {todo[0]}"
        return "the report (every round is done)"

    def _prompt_exam(self) -> Exam:
        return Exam(name=self.exam.name, items=[], instructions=self.exam.instructions)

    def _dir(self, number: int) -> RoundDir:
        return self.dir.round(number)

    def _load_round(self, number: int) -> Round:
        path = self._dir(number).record
        if not path.exists():
            return Round(round=number)
        record = Round(**json.loads(path.read_text()))
        self.teacher.calls += record.teacher_calls  # what earlier runs of this round already spent
        self.teacher.tokens += record.teacher_tokens
        return record

    def _save_round(self, record: Round) -> None:
        write_json(self._dir(record.round).record, record.to_dict())

    def _save_state(self) -> None:
        write_json(self.dir.state, {"config": stored_config(self.config),
                                             "rounds": len(self.rounds), "stopped": self.stopped})

    def final(self) -> Round:
        """The round whose student is the result (`choose_round`): never the exam's pick."""
        number = choose_round([r.to_dict() for r in self.rounds], self.config.select)
        return next(r for r in self.rounds if r.round == number)

    def report(self) -> dict[str, Any]:
        """The run as one JSON-able dict: settings, the untrained student, every round, why it stopped."""
        low, high = (wilson(self.baseline["correct"], self.baseline["n"]) if self.baseline else (None, None))
        return {"config": stored_config(self.config), "baseline": self.baseline,
                "baseline_ci": [low, high], "rounds": [r.to_dict() for r in self.rounds], "stopped": self.stopped,
                "chosen_round": self.final().round if any(r.exam for r in self.rounds) else None,
                "teacher_calls": self.teacher.calls, "teacher_tokens": self.teacher.tokens}


def margin(item: Item, answer: Any) -> tuple[float | None, str]:
    """How far the reference's log-probability is above the best other candidate's, and that candidate."""
    scores = answer.choice_logprobs or {}
    if item.reference not in scores or len(scores) < 2:
        return None, ""
    runner_up = max((k for k in scores if k != item.reference), key=lambda k: scores[k])
    return scores[item.reference] - scores[runner_up], runner_up


def choose_round(rounds: list[dict[str, Any]], select: str) -> int:
    """The round whose student is the result: the best dev score (ties: the earlier round, trained on less),
    or with `select: last` or without dev scores the last round whose student sat the exam."""
    trained = [r for r in rounds if r.get("exam")]
    if not trained:
        raise ValueError("no round trained a student")
    if select == "dev" and all(r.get("dev") for r in trained):
        return max(trained, key=lambda r: (r["dev"]["accuracy"], -r["round"]))["round"]
    return trained[-1]["round"]


def assign_folds(items: list[Item], k: int) -> dict[str, int]:
    """Item id -> fold in 0..k-1: stratified by reference, each label's items dealt round-robin in a fixed
    order of their ids' hashes, so every round and every rerun holds out the same items."""
    import hashlib

    order = sorted(items, key=lambda i: (i.reference, hashlib.sha256(i.id.encode()).hexdigest()))
    return {item.id: number % k for number, item in enumerate(order)}


def fold_answer(item: Item, answer: Any, correct: bool, fold: int) -> dict[str, Any]:
    """What a fold student answered on its held-out item: the answer, the runner-up and the margin."""
    scores = answer.choice_logprobs or {}
    runner_up, gap = "", None
    if scores and item.reference in scores:
        chosen = answer.text if answer.text in scores else max(scores, key=lambda k: scores[k])
        runner_up = max((k for k in scores if k != chosen), key=lambda k: scores[k], default="")
        gap = scores[chosen] - scores[item.reference]
    return {"answer": answer.text, "correct": correct, "runner_up": runner_up, "margin": gap, "fold": fold}


__all__ = ["Round", "Teach", "assign_folds", "choose_round"]
