"""Sit an exam: ask a model every item, grade every answer, store everything, report a score.

The loop works in batches. For each batch it looks every request up in the response cache,
sends only the misses to the model, and writes responses, answers and grades in one
transaction. An interrupted run (Ctrl-C, kill -9) is resumed by the next identical
invocation: items already answered are skipped, and cached responses cost nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from magister import contextual
from magister.cache import ask
from magister.errors import ConfigError
from magister.exams.prompt import build_request
from magister.graders import as_batch, get_grader
from magister.judges import prompts
from magister.judges.calibrate import Calibration
from magister.judges.judge import JUDGED, Judge
from magister.models.base import Model
from magister.progress import progress_bar
from magister.stats import mean_ci, wilson
from magister.store import Store
from magister.types import Answer, Completion, Exam, Grade, Item


@dataclass
class Summary:
    """The score of a run, and what it cost."""

    run_id: str
    exam: str
    model: str
    grader: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_score: float
    parse_failures: int
    cache_hits: int  # answers this invocation took from the response cache
    model_calls: int  # requests this invocation sent to the model
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    resumed_items: int
    judge_repeat_agreement: float | None = None  # judged graders: a second, uncached judgment on a sample
    judge_share: float | None = None  # `match` with the cascade: share of answers that reached the judge
    judge_tokens_saved: int | None = None  # estimated: settled answers x judge tokens per judged answer
    n_failed: int = 0  # items the backend refused (e.g. HTTP 400): not scored, retried by the same command
    damaged_cache_rows: int = 0  # cached responses that could not be read: treated as misses and asked again
    failed: list[dict[str, str]] = field(default_factory=list)  # {item_id, error}

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def fingerprint(exam: Exam, model: Model, grader: str, settings: dict[str, object]) -> str:
    """Identical invocations share a fingerprint; an unfinished run with it is resumed."""
    payload = [exam.version, model.spec, model.identity(), grader, settings]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def answer_from(item: Item, key: str, completion: Completion) -> Answer:
    return Answer(item_id=item.id, text=completion.text, choice_logprobs=completion.choice_logprobs,
                  prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                  latency_s=completion.latency_s, cached=completion.cached, request_key=key)


def summarize(run_id: str, exam: Exam, model: str, grader: str, graded: list[tuple[Answer, Grade]],
              wall_s: float, resumed_items: int, cache_hits: int, model_calls: int) -> Summary:
    grades = [g for _, g in graded]
    answers = [a for a, _ in graded]
    correct = sum(1 for g in grades if g.correct)
    n = len(grades)
    binary = all(g.correct is not None for g in grades)
    low, high = wilson(correct, n) if binary else mean_ci([g.score for g in grades])
    return Summary(
        run_id=run_id, exam=exam.name, model=model, grader=grader, n=n, correct=correct,
        accuracy=correct / n if n else 0.0, ci_low=low, ci_high=high,
        mean_score=sum(g.score for g in grades) / n if n else 0.0,
        parse_failures=sum(1 for g in grades if not g.parsed),
        cache_hits=cache_hits, model_calls=model_calls,
        prompt_tokens=sum(a.prompt_tokens for a in answers), completion_tokens=sum(a.completion_tokens for a in answers),
        wall_s=wall_s, resumed_items=resumed_items)


def grader_for(name: str, judge: Model | None, store: Store, calibration: Path | None = None,
               cascade: bool = False, calibrate_choices: bool = False
               ) -> Callable[[list[Item], list[Answer]], list[Grade]]:
    """The batch grading function for a grader name; judged graders ask `judge` through the cache.

    `match` and `rubric` take a calibration file (`magister calibrate`); `match` also the cascade
    (the rules settle what they can before the judge is asked)."""
    if name not in JUDGED:
        return as_batch(get_grader(name))
    if judge is None:
        raise ConfigError(f"grader '{name}' needs a judge model (--judge SPEC)")
    if name != "match" and (cascade or calibrate_choices):
        raise ConfigError(f"the cascade and contextual calibration apply to the 'match' grader, not '{name}'")
    fitted = Calibration.load(calibration) if calibration is not None else None
    if fitted is not None and fitted.grader != name:
        raise ConfigError(f"{calibration} calibrates the '{fitted.grader}' grader, not '{name}'")
    if fitted is not None and fitted.prompt and fitted.prompt != prompts.version(name):
        raise ConfigError(f"{calibration} was fitted on another version of the '{name}' judge prompt "
                          f"({fitted.prompt}, now {prompts.version(name)}): refit it with `magister calibrate`")
    return getattr(Judge(judge, store, calibration=fitted, cascade=cascade, calibrate_choices=calibrate_choices),
                   name)


def exam_shape(exam: Exam) -> dict[str, list]:
    """What decides how an exam is asked and graded: its item kinds and label sets (stored with every run)."""
    return {"kinds": sorted({i.kind.value for i in exam.items}),
            "label_sets": sorted({tuple(i.labels) for i in exam.items if i.labels})}


def sit(exam: Exam, model: Model, store: Store, *, grader: str = "auto", judge: Model | None = None,
        use_choices: bool = True, batch_size: int | None = None, console: Console | None = None,
        progress: bool = True, on_batch: Callable[[int], None] | None = None, calibration: Path | None = None,
        cascade: bool = False, calibrate_choices: bool = False) -> Summary:
    """Make `model` sit `exam`, grading with `grader`; returns the run's Summary.

    Judged graders (match, checklist, rubric) need a `judge` model. `use_choices` scores
    closed answer sets by log-probability when the backend can; `on_batch` is called with
    the number of items finished so far (tests use it to interrupt).
    """
    grade = grader_for(grader, judge, store, calibration, cascade, calibrate_choices and grader == "match")
    if grader == "regex":  # a bad pattern fails before any model call, naming its item
        for item in exam.items:
            try:
                re.compile(item.reference)
            except re.error as error:
                raise ConfigError(f"item {item.id!r}: the reference is not a valid regular expression for "
                                  f"--grader regex ({error})") from None
    choices = use_choices and model.supports_choices
    settings: dict[str, object] = {"use_choices": choices}
    if judge is not None and grader in JUDGED:
        settings["judge"] = [judge.spec, judge.identity()]
    if cascade:
        settings["cascade"] = True
    if calibrate_choices and grader == "match":
        settings["judge_calibrate_choices"] = list(contextual.CONTENT_FREE)
    priors: dict[tuple[str, ...], dict[str, float]] = {}
    if calibrate_choices and choices:  # contextual calibration (magister.contextual)
        settings["calibrate_choices"] = list(contextual.CONTENT_FREE)

        def content_free(item: Item) -> dict[str, float]:
            key = (item.kind.value, *(item.candidates or []))
            if key not in priors:
                priors[key] = contextual.prior(
                    item, lambda requests: [c.choice_logprobs or {} for c in ask(model, store, requests)[1]],
                    lambda blank: build_request(blank, exam, use_choices=True))
            return priors[key]
    if calibration is not None:  # the file and its content: a grade traces back to the calibration
        settings["calibration"] = [str(calibration), Calibration.fingerprint(calibration)]
    fp = fingerprint(exam, model, grader, settings)
    config = {"exam": exam.name, "exam_version": exam.version, "source": exam.source, "model": model.spec,
              "grader": grader, **settings, "fewshot": len(exam.fewshot), **exam_shape(exam)}
    run_id = store.open_run(exam, model.spec, grader, fp, config)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this worker, for item leases
    done = store.answered(run_id)
    todo = [(pos, item) for pos, item in enumerate(exam.items) if item.id not in done]
    size = batch_size or model.batch_size
    console = console or Console(stderr=True)
    started = time.perf_counter()
    stats = {"hits": 0, "calls": 0, "tokens": 0}
    failures: dict[str, str] = {}  # item id -> why the backend refused it

    try:
        with progress_bar(console, progress) as bar:
            task = bar.add_task(f"{exam.name} · {model.spec}", total=len(exam.items), completed=len(done), rate="")
            if done:
                console.print(f"Resuming run {run_id}: {len(done)} of {len(exam.items)} items already answered.")
            finished = 0
            while todo:
                batch, todo = _claim_batch(store, run_id, owner, todo, size)
                if not batch:  # every item left is being answered by another worker: wait for it
                    time.sleep(0.5)
                    todo = [(pos, item) for pos, item in todo if item.id not in store.answered(run_id)]
                    bar.update(task, completed=len(store.answered(run_id)))
                    continue
                requests = [build_request(item, exam, use_choices=choices) for _, item in batch]
                keys, completions, hits = ask(model, store, requests)
                for (_, item), c in zip(batch, completions):
                    if c.error is not None:  # refused by the backend: not stored, so the same command retries it
                        failures[item.id] = c.error
                answered = [(b, k, c) for b, k, c in zip(batch, keys, completions) if c.error is None]
                answers = [answer_from(item, key, c) for (_, item), key, c in answered]
                if "calibrate_choices" in settings:
                    answers = [contextual.recalibrate(a, content_free(item)) if item.candidates else a
                               for ((_, item), _, _), a in zip(answered, answers)]
                grades = grade([item for (_, item), _, _ in answered], answers)
                with store.transaction():
                    store.put_answers(run_id, [(pos, a, g) for ((pos, _), _, _), a, g in zip(answered, answers,
                                                                                            grades)])
                stats["hits"] += hits
                stats["calls"] += len(batch) - hits
                stats["tokens"] += sum(c.completion_tokens + c.prompt_tokens for c in completions if not c.cached)
                store.release(run_id, owner)
                elapsed = time.perf_counter() - started
                finished += len(batch)
                bar.update(task, advance=len(batch),
                           rate=f"{finished / elapsed:.1f} items/s · {stats['tokens'] / elapsed:.0f} tok/s · "
                                f"{stats['hits']} cached")
                if on_batch is not None:
                    on_batch(finished)

        summary = summarize(run_id, exam, model.spec, grader, store.answers(run_id),
                            time.perf_counter() - started, resumed_items=len(done), cache_hits=stats["hits"],
                            model_calls=stats["calls"])
        summary.damaged_cache_rows = store.damaged_responses
        if judge is not None and grader in JUDGED:
            summary.judge_repeat_agreement = repeat_agreement(grader, judge, exam, store.answers(run_id))
        if cascade:
            settled = sum(1 for _, g in store.answers(run_id) if (g.rationale or "").startswith("settled by the rules"))
            summary.judge_share = (summary.n - settled) / summary.n if summary.n else None
            usage = getattr(grade, "__self__").usage
            tokens = usage.prompt_tokens + usage.completion_tokens
            if usage.calls:  # what this invocation's fresh judge calls cost on average
                summary.judge_tokens_saved = round(settled * tokens / usage.calls)
    except KeyboardInterrupt:  # finished batches are stored; the same command resumes
        store.release(run_id, owner)
        store.mark_run(run_id, "interrupted")
        raise
    except Exception:
        store.release(run_id, owner)
        store.mark_run(run_id, "failed")
        raise
    if failures:
        summary.n_failed = len(failures)
        summary.failed = [{"item_id": i, "error": e} for i, e in failures.items()]
    store.finish_run(run_id, summary.to_dict(), status="incomplete" if failures else "finished")
    return summary


def _claim_batch(store: Store, run_id: str, owner: str, todo: list[tuple[int, Item]],
                 size: int) -> tuple[list[tuple[int, Item]], list[tuple[int, Item]]]:
    """The next batch this worker leased, and what is left to try; items other workers hold stay in the
    list (they are asked again only if their worker dies or its lease runs out)."""
    for start in range(0, len(todo), size):
        window = todo[start:start + size]
        mine = set(store.claim(run_id, [item.id for _, item in window], owner))
        if mine:
            batch = [(pos, item) for pos, item in window if item.id in mine]
            return batch, todo[:start] + [(p, i) for p, i in window if i.id not in mine] + todo[start + size:]
    return [], todo


def repeat_agreement(grader: str, judge: Model, exam: Exam, graded: list[tuple[Answer, Grade]],
                     sample: int = 10) -> float:
    """Share of a sample of grades that a second judgment, bypassing the cache, reproduces.

    A deterministic local judge gives 1.0; a hosted judge often does not, even at temperature 0.
    """
    items = {item.id: item for item in exam.items}
    picked = graded[:sample]
    fresh = Store(":memory:")
    try:
        again = getattr(Judge(judge, fresh), grader)([items[a.item_id] for a, _ in picked], [a for a, _ in picked])
    finally:
        fresh.close()
    return sum(g.correct == h.correct for (_, g), h in zip(picked, again)) / max(len(picked), 1)
