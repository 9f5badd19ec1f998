"""What each page of `magister view` shows, as plain data (dicts and lists of JSON values).

The HTML pages render these dicts and `?format=json` returns them as they are, so a script reads
exactly what a person sees. Item tables are paged in SQL, so a run of 100,000 items costs one
page of rows, never the whole run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from magister.errors import ConfigError
from magister.jsonl import finite
from magister.rankings import find_run
from magister.stats.intervals import wilson
from magister.store import ItemRow, RunRow, Store

PER_PAGE = 50


def run_row(run: RunRow) -> dict[str, Any]:
    """One line of the runs table."""
    s = run.summary or {}
    return {"run_id": run.id, "created_at": run.created_at, "status": run.status, "exam": run.exam_name,
            "exam_version": run.exam_version, "model": run.model, "grader": run.grader, "n": run.n_items,
            "accuracy": s.get("accuracy"), "ci_low": s.get("ci_low"), "ci_high": s.get("ci_high"),
            "parse_failures": s.get("parse_failures"), "n_failed": s.get("n_failed", 0),
            "tokens": (s.get("prompt_tokens", 0) + s.get("completion_tokens", 0)) if s else None,
            "wall_s": s.get("wall_s")}


def runs(store: Store, exam: str | None = None, model: str | None = None, limit: int = 500) -> dict[str, Any]:
    rows = [run_row(r) for r in store.runs(exam=exam, limit=limit) if model is None or r.model == model]
    exams = store.exam_names()
    models = store.model_names()
    teach = [{"name": name, "path": str(path)} for name, path, _ in store.teach_runs()]
    return {"runs": rows, "exams": exams, "models": models, "filters": {"exam": exam, "model": model},
            "teach_runs": teach}


def _item_rows(rows: list[ItemRow]) -> list[dict[str, Any]]:
    return [row._asdict() for row in rows]  # item_id, input, reference, answer, extracted, correct, ...


def run_page(store: Store, run_id: str, *, wrong: bool = False, unparsed: bool = False, label: str | None = None,
             q: str | None = None, page: int = 1, per_page: int = PER_PAGE) -> dict[str, Any]:
    """A run: its score and interval, a confusion matrix or score histogram, and one page of its items."""
    run = find_run(store, run_id)
    filters: dict[str, Any] = {"wrong": wrong, "unparsed": unparsed, "label": label, "q": q}
    total = store.count_items(run.id, run.exam_version, **filters)
    page = max(1, page)
    rows = _item_rows(store.items(run.id, run.exam_version, **filters, limit=per_page,
                                  offset=(page - 1) * per_page))
    n, right, binary, unparsed_n, mean_score = store.score_counts(run.id)
    score: dict[str, Any] = {"n": n, "correct": right, "parse_failures": unparsed_n, "mean_score": mean_score}
    if n and binary == n:
        low, high = wilson(right, n)
        score.update(accuracy=right / n, ci_low=low, ci_high=high)
    sets = _label_sets(store, run)
    labels = sorted({label for labels in sets for label in labels})
    confusions = [_confusion(store, run, labels) for labels in sets]  # one matrix per label set
    return {"run": run_row(run), "config": run.config, "summary": run.summary, "score": score,
            "confusion": confusions[0] if confusions else None, "confusions": confusions,
            "histogram": None if labels else _histogram(store, run), "labels": labels,
            "items": rows, "total": total, "page": page, "pages": max(1, math.ceil(total / per_page)),
            "per_page": per_page, "filters": {"wrong": wrong, "unparsed": unparsed, "label": label, "q": q}}


def _label_sets(store: Store, run: RunRow) -> list[list[str]]:
    """The run's label sets (sentiment labels, option letters, ...): a confusion matrix belongs to one of them."""
    stored = run.config.get("label_sets") or run.config.get("labels")
    if isinstance(stored, list) and stored and isinstance(stored[0], list):
        return [list(labels) for labels in stored]
    if isinstance(stored, list) and stored and all(isinstance(v, str) for v in stored):
        return [list(stored)]
    kinds = run.config.get("kinds")
    if kinds and set(kinds) <= {"classification", "multiple_choice"}:
        return [store.references(run.exam_version)]
    return []


def _confusion(store: Store, run: RunRow, labels: list[str]) -> dict[str, Any]:
    """The items whose reference is in `labels`: rows the reference, columns what the answer was read as
    (unparsed answers in their own column)."""
    cells = [c for c in store.confusion_cells(run.id, run.exam_version) if c[0] in labels]
    seen = {c[1] for c in cells if c[1]} - set(labels)
    columns = labels + sorted(seen) + ["(unparsed)"]
    rows = sorted({c[0] for c in cells} | set(labels), key=lambda r: (r not in labels, labels.index(r)
                                                                      if r in labels else 0, r))
    matrix = {r: dict.fromkeys(columns, 0) for r in rows}
    for reference, extracted, count in cells:
        matrix[reference][extracted or "(unparsed)"] += count
    per_label = [{"label": r, "n": sum(matrix[r].values()), "correct": matrix[r].get(r, 0)} for r in rows]
    for row in per_label:
        row["accuracy"] = row["correct"] / row["n"] if row["n"] else None
    return {"rows": rows, "columns": columns, "cells": [[matrix[r][c] for c in columns] for r in rows],
            "per_label": per_label}


def _histogram(store: Store, run: RunRow, bins: int = 10) -> dict[str, Any]:
    buckets = [0] * bins
    for bucket, count in store.score_histogram(run.id, bins):
        if bucket is not None and 0 <= bucket < bins:
            buckets[bucket] = count
    return {"edges": [k / bins for k in range(bins + 1)], "counts": buckets}


def stored_json(text: str) -> Any:
    """A JSON column read back; a damaged row (not JSON) is shown as what it is, never a crash."""
    try:
        return json.loads(text)
    except ValueError:
        return {"damaged": "this stored row is not valid JSON: the store is damaged here (a damaged cached "
                           "response is asked again by the next exam that needs it)", "text": text[:200]}


def item_page(store: Store, run_id: str, item_id: str) -> dict[str, Any]:
    """One answer in full: the item, the answer, its grade, choice log-probabilities, the exact request."""
    run = find_run(store, run_id)
    row = store.item_answer(run.id, run.exam_version, item_id)
    if row is None:
        raise ConfigError(f"run {run.id} has no answer to item '{item_id}'")
    request = store.response_json(row.request_key)
    logprobs = row.choice_logprobs
    bars = None
    if logprobs:
        top = max(logprobs.values())
        weights = {k: math.exp(v - top) for k, v in logprobs.items()}
        total = sum(weights.values())
        bars = sorted(({"choice": k, "logprob": v, "prob": weights[k] / total} for k, v in logprobs.items()),
                      key=lambda b: -b["logprob"])
    neighbours = store.neighbours(run.id, row.position)
    item = stored_json(row.item_json)
    if "damaged" in item:  # what the pages read of an item, so a damaged one still shows its answer and grade
        item.update(id=item_id, input=item["damaged"], reference="", kind="", choices=None)
    return {"run": run_row(run), "item": item,
            "answer": {"text": row.text, "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
                       "latency_s": row.latency_s, "cached": row.cached, "request_key": row.request_key},
            "grade": {"grader": row.grader, "score": row.score, "correct": row.correct, "extracted": row.extracted,
                      "parsed": row.parsed, "rationale": row.rationale, "raw": row.raw},
            "choice_logprobs": bars,
            "request": stored_json(request[0]) if request else None,
            "completion": stored_json(request[1]) if request else None,
            "labels": [{"who": w, "correct": c, "at": t} for i, w, c, t in store.labels(run.id) if i == item_id],
            "judge": None if "damaged" in item else judge_request(store, run, item, row.text),
            "previous": neighbours[0], "next": neighbours[1]}


def judge_request(store: Store, run: RunRow, item: dict[str, Any], answer: str) -> dict[str, Any] | None:
    """The `match` judge's exact request and reply for one answer, read back from the store: the prompt is
    rebuilt the way the grader builds it (with the defences) and found among the stored requests."""
    if run.grader != "match":
        return None
    from magister.judges import prompts
    from magister.types import Request

    messages = prompts.match(item["input"], item["reference"], answer)
    wanted = [m.model_dump() for m in messages]
    for request, completion in store.responses_containing(
            json.dumps(messages[-1].content, ensure_ascii=False)[1:-1][:200]):
        try:
            stored = Request.model_validate_json(request)
        except ValueError:  # a damaged row cannot be the judge's request
            continue
        if [m.model_dump() for m in stored.messages or []] == wanted:
            return {"request": json.loads(request), "completion": stored_json(completion)}
    return {"request": None, "note": "no judge call is stored for this answer (settled by the rules, or judged "
                                     "before the prompt changed)"}


def compare_page(store: Store, run_a: str, run_b: str, page: int = 1, per_page: int = PER_PAGE,
                 discordant_only: bool = False) -> dict[str, Any]:
    """Two runs on their shared items: the paired test, then the items where they differ first."""
    from magister.rankings import compare_runs

    result, a, b = compare_runs(store, run_a, run_b)
    total = store.count_paired(a.id, b.id, a.exam_version, discordant_only=discordant_only)
    page = max(1, page)
    rows = store.paired_items(a.id, b.id, a.exam_version, discordant_only=discordant_only, limit=per_page,
                              offset=(page - 1) * per_page)
    items = [{"item_id": r.item_id, "input": r.input, "reference": r.reference,
              "a": {"answer": r.a_answer, "correct": r.a_correct, "score": r.a_score},
              "b": {"answer": r.b_answer, "correct": r.b_correct, "score": r.b_score},
              "discordant": r.discordant} for r in rows]
    return {"a": run_row(a), "b": run_row(b), "comparison": finite(result.to_dict()),
            "items": items, "total": total, "page": page, "pages": max(1, math.ceil(total / per_page)),
            "per_page": per_page, "discordant_only": discordant_only}


def leaderboard_page(store: Store, exam: str) -> dict[str, Any]:
    """Per exam: the latest finished run of each model, accuracy with its 95% interval, ranked by the interval
    rule (a model's rank is one plus the number of models whose interval lies wholly above its own)."""
    from magister.rankings import exam_leaderboard

    rows = [s.to_dict() for s in exam_leaderboard(store, exam)]
    for row in rows:
        summary = store.run(row["run_id"]).summary or {}
        row["anchors_estimate"] = summary.get("anchors_estimate")
    return {"exam": exam, "kind": "exam", "rows": rows,
            "anchored": any(r["anchors_estimate"] for r in rows)}


def battles_page(path: Path, anchor: str | None = None, rounds: int = 300) -> dict[str, Any]:
    """A Bradley-Terry leaderboard from a battles file given to `magister view --battles`."""
    from magister.stats.bradley_terry import leaderboard, load_battles

    battles = load_battles(path)
    board = leaderboard(battles, rounds=rounds, anchor=anchor)
    rows = [r.to_dict() for r in board]
    low = min((r["ci_low"] for r in rows if math.isfinite(r["ci_low"])), default=0.0)
    high = max((r["ci_high"] for r in rows if math.isfinite(r["ci_high"])), default=1.0)
    return {"exam": path.stem, "kind": "battles", "rows": rows, "n_battles": len(battles), "rounds": rounds,
            "scale": [low, high], "anchor": anchor}


# -- teaching runs -------------------------------------------------------------------------------------


def _read(path: Path, default: Any = None) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else default


def teach_dir(store: Store, name: str) -> Path:
    for found, path, _ in store.teach_runs():
        if found == name:
            return path
    raise ConfigError(f"no teaching run named '{name}' (see the runs page)")


def _chosen(rounds: list[dict[str, Any]], config: dict[str, Any]) -> int | None:
    """The round a teaching run chose, for a run without report.json yet (running, or written by a benchmark)."""
    from magister.teach.loop import choose_round

    return choose_round(rounds, config.get("select", "last")) if any(r.get("exam") for r in rounds) else None


def teach_page(directory: Path, name: str | None = None) -> dict[str, Any]:
    """A teaching run read from its folder: config, baseline, rounds with named columns, losses, the mined
    items with the student's wrong answers, every kept and rejected example, and the items whose grade changed."""
    from magister.teach.rundir import RunDir

    run = RunDir(directory)
    report = _read(run.report) or {}
    state = _read(run.state, {})
    config = report.get("config") or state.get("config") or {}
    rounds = report.get("rounds") or [_read(r.record) for r in run.rounds() if r.record.exists()]
    baseline = report.get("baseline") or _read(run.baseline)
    out_rounds = []
    previous_grades = _read(run.baseline_grades)
    changes = []
    for row in rounds:
        number = row["round"]
        folder = run.round(number)
        drafts = _read(folder.drafts, [])
        for k, d in enumerate(drafts):
            d["id"] = f"r{number}-{k}"
            d["kept"] = not d.get("reason")
        grades = _read(folder.grades)
        if grades and previous_grades:
            for item, ok in grades.items():
                if item in previous_grades and previous_grades[item] != ok:
                    changes.append({"round": number, "item_id": item, "before": previous_grades[item], "after": ok})
        previous_grades = grades or previous_grades
        exam = row.get("exam") or {}
        out_rounds.append({
            "round": number, "accuracy": exam.get("accuracy"), "ci_low": exam.get("ci_low"),
            "ci_high": exam.get("ci_high"), "n": exam.get("n"), "run_id": exam.get("run_id"),
            "vs_round0": row.get("vs_round0"), "mined": row.get("mined", 0), "written": row.get("generated", 0),
            "duplicates": row.get("deduped", 0), "rejected": row.get("rejected", 0), "kept": row.get("kept", 0),
            "training_examples": row.get("data", 0), "teacher_calls": row.get("teacher_calls", 0),
            "teacher_tokens": row.get("teacher_tokens", 0), "by_strategy": row.get("by_strategy", {}),
            "rejections": row.get("rejections", {}), "wall_s": row.get("wall_s", {}),
            "train": row.get("train", {}), "losses": _read(folder.losses, []),
            "mined_items": _read(folder.mined, []), "drafts": drafts,
            "dev": row.get("dev"), "folds": row.get("folds"), "verifier": row.get("verifier"),
            "contamination": row.get("contamination"), "rejected_by_label": row.get("rejected_by_label", {})})
    return {"name": name or directory.name, "path": str(directory), "config": config, "baseline": baseline,
            "chosen_round": report.get("chosen_round", _chosen(rounds, config)),
            "stopped": report.get("stopped", state.get("stopped")), "rounds": out_rounds, "changes": changes,
            "teacher_calls": report.get("teacher_calls"), "teacher_tokens": report.get("teacher_tokens")}


def teach_data(directory: Path) -> list[dict[str, Any]]:
    """The teaching run's final training data (seed + kept), as OpenAI chat fine-tuning rows: the same
    messages the student was trained on."""
    from magister.exams.prompt import build_request
    from magister.teach.train import target_text
    from magister.teach.loop import read_items
    from magister.teach.rundir import RunDir
    from magister.types import Exam

    rounds = [r.data for r in RunDir(directory).rounds() if r.data.exists()]
    if not rounds:
        return []
    items = read_items(rounds[-1])
    exam = Exam(name="teach", items=items)
    return [{"messages": [m.model_dump(include={"role", "content"}) for m in
                          build_request(item, exam, use_choices=False).messages or []]
             + [{"role": "assistant", "content": target_text(item)}]} for item in items]


# -- human labels and the judge's agreement with them ----------------------------------------------------


def label_page(store: Store, run_id: str, who: str, sample: int = 50) -> dict[str, Any]:
    """A fixed sample of a run's answers to label (spread over the run), with this person's labels so far,
    and the grader's agreement with every stored human label."""
    from magister.stats.agreement import bootstrap_ci, kappa

    run = find_run(store, run_id)
    n = store.answer_count(run.id)
    rng = np.random.default_rng(0)
    positions = sorted(rng.choice(n, size=min(sample, n), replace=False).tolist()) if n else []
    queue = _item_rows(store.items(run.id, run.exam_version, positions=positions))
    labels = store.labels(run.id)
    mine = {item: ok for item, person, ok, _ in labels if person == who}
    for row in queue:
        row["label"] = mine.get(row["item_id"])
    grades = store.grade_values(run.id)
    latest: dict[str, bool] = {}
    for item, _, ok, _ in labels:  # the latest label per item, whoever gave it
        latest[item] = ok
    pairs = [(item, ok, grades[item][0] if grades[item][0] is not None else grades[item][1] >= 0.5)
             for item, ok in latest.items() if item in grades]
    agreement: dict[str, Any] = {"n": len(pairs)}
    if pairs:
        human, grader = [p[1] for p in pairs], [bool(p[2]) for p in pairs]
        agreement["accuracy"] = float(np.mean([h == g for h, g in zip(human, grader)]))
        if len(pairs) >= 2:
            agreement["kappa"] = kappa(grader, human)
            low, high = bootstrap_ci(kappa, grader, human, rounds=500)
            agreement["kappa_ci"] = finite([low, high])
        agreement["confusion"] = {"grader_right_human_right": sum(g and h for h, g in zip(human, grader)),
                                  "grader_right_human_wrong": sum(g and not h for h, g in zip(human, grader)),
                                  "grader_wrong_human_right": sum(h and not g for h, g in zip(human, grader)),
                                  "grader_wrong_human_wrong": sum(not g and not h for h, g in zip(human, grader))}
        agreement["disagreements"] = [{"item_id": item, "human": h, "grader": bool(g)} for item, h, g in pairs
                                      if h != bool(g)]
        from magister.judges.check import calibration_curve

        scores = [grades[item][1] for item, _, _ in pairs]
        agreement["calibration_curve"] = calibration_curve(scores, human)
    return {"run": run_row(run), "who": who, "queue": queue, "labelled": sum(r["label"] is not None for r in queue),
            "agreement": agreement}
