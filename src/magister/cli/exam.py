"""Sitting exams and reading the results: exam, demo, runs, show, models."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Column, Table

from magister.cli.common import (JsonOpt, ModelOpt, closing, fail, guard, interruptible, open_store, out,
                                  print_json, shown_text)
from magister.errors import MagisterError
from magister.types import Kind


def sit_and_report(exam, model_spec: str, grader: str, use_choices: bool, as_json: bool,  # noqa: ANN001
                   anchors=None, judge_spec: str | None = None, calibration: Path | None = None,  # noqa: ANN001
                   cascade: bool = False, calibrate_choices: bool = False,
                   ray_pool: tuple[int, float] | None = None) -> None:
    """Sit EXAM (`exam`, `demo`): check the options, open the models and the store, sit, print the scores.

    `ray_pool` (actors, CPUs per actor) sits on Ray actors; a judged grader with no judge spec then asks
    the same actors."""
    from magister.graders import get_grader
    from magister.judges import JUDGED
    from magister.models.base import load_model
    from magister.sit import exam_shape, sit
    from magister.store import Store

    judge = None
    if grader in JUDGED:  # every check before the store opens: a bad option writes nothing
        if ray_pool is None or judge_spec is not None:
            judge = load_model(judge_spec or model_spec)
    else:
        get_grader(grader)
    if ray_pool is not None:
        from magister.models.ray_pool import RayPool

        model = RayPool(model_spec, actors=ray_pool[0], num_cpus=ray_pool[1])
        if grader in JUDGED and judge is None:
            judge = model
    else:
        model = load_model(model_spec)
    store = Store()
    with closing(model, judge, store), interruptible("finished items are saved. Run the same command again to "
                                                     "resume."):
        try:
            summary = sit(exam, model, store, grader=grader, judge=judge, use_choices=use_choices,
                          progress=not as_json, calibration=calibration, cascade=cascade and grader == "match",
                          calibrate_choices=calibrate_choices)
            estimate = None
            if anchors is not None:
                estimate = anchors.estimate({g.item_id: bool(g.correct) for _, g in store.answers(summary.run_id)
                                             if g.correct is not None})
                store.update_summary(summary.run_id, {"anchors_estimate": {**estimate.to_dict(),
                                                                           "exam_items": len(anchors.items)}})
        except MagisterError as error:
            raise fail(f"{error}\nFinished items are saved: run the same command again to resume.") from None
    if as_json:
        print_json({**summary.to_dict(), **({"estimate": estimate.to_dict()} if estimate else {})})
        return
    table = Table(title=f"Run {summary.run_id}", show_header=False)
    table.add_row("exam", f"{summary.exam} ({summary.n} items)")
    shape = exam_shape(exam)
    table.add_row("asked as", ", ".join(shape["kinds"]) + (f"; labels: {' | '.join(', '.join(s) for s in shape['label_sets'])}"
                                                          if shape["label_sets"] else "") + f"; grader {grader}")
    table.add_row("model", summary.model)
    table.add_row("accuracy", f"[bold]{summary.accuracy:.1%}[/]  95% CI {summary.ci_low:.1%} - {summary.ci_high:.1%}"
                  f"  ({summary.correct}/{summary.n})")
    table.add_row("parse failures", str(summary.parse_failures))
    if summary.n_failed:
        first = summary.failed[0]
        table.add_row("[yellow]failed items[/]", f"[yellow]{summary.n_failed} refused by the backend, not scored "
                      f"(first: {first['item_id']}: {first['error'][:120]}). Run the same command again to retry "
                      "them.[/]")
    if summary.judge_share is not None:
        saved = "" if summary.judge_tokens_saved is None else f", about {summary.judge_tokens_saved} judge tokens saved"
        table.add_row("cascade", f"{summary.judge_share:.0%} of answers reached the judge (the rules settled the "
                      f"rest{saved})")
    if summary.judge_repeat_agreement is not None:
        table.add_row("judge repeat agreement", f"{summary.judge_repeat_agreement:.0%} (a second, uncached judgment "
                      "of up to 10 answers)")
    table.add_row("model calls / cache hits", f"{summary.model_calls} / {summary.cache_hits}")
    table.add_row("tokens in / out", f"{summary.prompt_tokens} / {summary.completion_tokens}")
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    out.print(table)
    if estimate is not None:
        low, high = estimate.ci
        out.print(f"Estimated accuracy on all {len(anchors.items)} items "
                  f"(gp-IRT, from {estimate.anchors_sat} anchors): "
                  f"[bold]{estimate.gp_irt:.1%}[/] ± {1.96 * estimate.se:.1%} (95%: {low:.1%} - {high:.1%}); "
                  f"anchor mean {estimate.anchor:.1%}, IRT {estimate.irt:.1%}, p-IRT {estimate.p_irt:.1%}")
    out.print(f"Per-item answers and grades: magister show {summary.run_id}")


@guard
def exam(
    path: Annotated[str, typer.Argument(help="JSONL, CSV or Parquet file, a saved HF dataset dir, or hf:NAME.")],
    model: ModelOpt = "llamacpp:smollm2",
    grader: Annotated[str, typer.Option(help="auto, exact, label, choice, numeric, regex, contains; judged: "
                                        "match, checklist or rubric (with --judge).")] = "auto",
    judge: Annotated[Optional[str], typer.Option(help="Judge model spec for judged graders (default: the "
                                                 "model itself).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Sit only the first N items.")] = None,
    input: Annotated[Optional[str], typer.Option("--input", help="Column with the question.")] = None,
    reference: Annotated[Optional[str], typer.Option(help="Column with the reference answer.")] = None,
    id: Annotated[Optional[str], typer.Option("--id", help="Column with a unique item id.")] = None,
    choices: Annotated[Optional[str], typer.Option(help="Column with the options (multiple choice).")] = None,
    kind: Annotated[Optional[Kind], typer.Option(help="Item kind; inferred when left out.")] = None,
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated closed label set.")] = None,
    split: Annotated[str, typer.Option(help="Split of a Hugging Face dataset.")] = "test",
    name: Annotated[Optional[str], typer.Option(help="Exam name (default: the file name).")] = None,
    fewshot: Annotated[Optional[str], typer.Option(help="File of worked examples (same columns).")] = None,
    shots: Annotated[int, typer.Option(min=0, help="How many worked examples to take from --fewshot.")] = 8,
    instructions: Annotated[Optional[str], typer.Option(help="System prompt; {labels} is filled in.")] = None,
    no_choices: Annotated[bool, typer.Option("--no-choices", help="Generate and parse text even where "
                                             "the backend could score the answer set.")] = False,
    anchors: Annotated[Optional[Path], typer.Option(help="Anchors file from `magister anchors`: sit only the "
                                                    "anchor items and estimate the full-exam accuracy.")] = None,
    calibration: Annotated[Optional[Path], typer.Option(help="--grader match or rubric: verdicts from a calibration file "
                                                        "(`magister calibrate`).")] = None,
    cascade: Annotated[bool, typer.Option("--cascade/--no-cascade", help="--grader match: answers the rules "
                                          "settle (the reference is in the answer) need no judge call.")] = True,
    calibrate_choices: Annotated[bool, typer.Option("--calibrate-choices", help="Contextual calibration: divide "
                                                    "out the answers' prior on a content-free input (constrained "
                                                    "choice; and the judge's yes/no with --grader match).")] = False,
    use_ray: Annotated[bool, typer.Option("--ray", help="Sit on a pool of Ray actors, each loading its own copy "
                                          "of the model: a local Ray, or the cluster RAY_ADDRESS names "
                                          "(needs Magister's ray extra).")] = False,
    actors: Annotated[int, typer.Option(min=1, help="--ray: how many actors (copies of the model).")] = 2,
    actor_cpus: Annotated[float, typer.Option(min=0.01, help="--ray: CPUs Ray reserves for each actor "
                                              "(fractions are fine).")] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """Make a model sit an exam; grade, store and score every answer."""
    from magister.exams.load import FieldMap, load_exam, pick_fewshot
    from magister.stats.anchors import Anchors

    fields = FieldMap(input=input, reference=reference, id=id, choices=choices, kind=kind, split=split,
                      labels=tuple(x.strip() for x in labels.split(",")) if labels else None)
    loaded = load_exam(path, fields, name=name, limit=limit)
    if fewshot:
        loaded.fewshot = pick_fewshot(load_exam(fewshot, fields).items, shots)
    if instructions:
        loaded.instructions = instructions
    fitted = None
    if anchors is not None:
        fitted = Anchors.load(anchors)
        by_id = {item.id: item for item in loaded.items}
        missing = [a for a in fitted.anchor_ids if a not in by_id]
        if missing:
            raise fail(f"{anchors}: {len(missing)} anchor items are not in {path} (first: {missing[0]!r}); "
                        "fit the anchors on this exam")
        loaded = loaded.model_copy(update={"name": f"{loaded.name}-anchors",
                                           "items": [by_id[a] for a in fitted.anchor_ids]})
    sit_and_report(loaded, model, grader, not no_choices, as_json, anchors=fitted, judge_spec=judge,
                    calibration=calibration, cascade=cascade, calibrate_choices=calibrate_choices,
                    ray_pool=(actors, actor_cpus) if use_ray else None)


@guard
def demo(model: ModelOpt = "llamacpp:smollm2", as_json: JsonOpt = False,
         calibrate_choices: Annotated[bool, typer.Option("--calibrate-choices", help="Contextual calibration of "
                                                         "the constrained choices.")] = False) -> None:
    """Sit the demo exam shipped with Magister (44 items: sentiment, trivia, sums), offline."""
    from magister.exams.load import load_exam

    data = resources.files("magister") / "data"
    with resources.as_file(data / "demo.jsonl") as items, resources.as_file(data / "demo_fewshot.jsonl") as shots:
        loaded = load_exam(items, name="demo")
        loaded.fewshot = load_exam(shots).items
    sit_and_report(loaded, model, "auto", True, as_json, calibrate_choices=calibrate_choices)


@guard
def runs(exam: Annotated[Optional[str], typer.Option(help="Only runs of this exam.")] = None,
         limit: int = 50, as_json: JsonOpt = False) -> None:
    """List stored runs, newest first."""
    with open_store() as store:
        rows = store.runs(exam=exam, limit=limit)
    if as_json:
        print_json([{"run_id": r.id, "created_at": r.created_at, "status": r.status, "exam": r.exam_name,
                     "exam_version": r.exam_version, "model": r.model, "grader": r.grader, "n": r.n_items,
                     **({k: r.summary[k] for k in ("accuracy", "ci_low", "ci_high")} if r.summary else {})}
                    for r in rows])
        return
    table = Table("when", "exam", "model", "grader", "items", "accuracy (95% CI)", "status")
    table.columns.insert(0, Column("run", no_wrap=True, min_width=22))  # ids are never cut: `show` takes them whole
    for r in rows:
        score = (f"{r.summary['accuracy']:.1%} ({r.summary['ci_low']:.1%}-{r.summary['ci_high']:.1%})"
                 if r.summary else "-")
        table.add_row(r.id, time.strftime("%m-%d %H:%M", time.localtime(r.created_at)), shown_text(r.exam_name),
                      shown_text(r.model),
                      r.grader, str(r.n_items), score, r.status)
    out.print(table)


@guard
def show(run_id: Annotated[str, typer.Argument(help="Run id (or its unique start or ending).")],
         wrong: Annotated[bool, typer.Option("--wrong", help="Only the items graded wrong.")] = False,
         unparsed: Annotated[bool, typer.Option("--unparsed", help="Only answers the grader could not read.")]
         = False,
         label: Annotated[Optional[str], typer.Option(help="Only items with this reference.")] = None,
         grep: Annotated[Optional[str], typer.Option(help="Only items whose question or answer contains this "
                                                     "text (or whose id is it).")] = None,
         page: Annotated[int, typer.Option(min=1, help="Page of the item table.")] = 1,
         per_page: Annotated[int, typer.Option(min=1, help="Items per page.")] = 50,
         item: Annotated[Optional[str], typer.Option(help="One item in full: the answer, its grade, the exact "
                                                     "request, and the judge's exact prompt and reply.")] = None,
         as_json: JsonOpt = False) -> None:
    """A run's items (paged, filtered), with the per-label breakdown and confusion matrix; --json streams
    every matching item with its exact request."""
    from magister.web import data

    filters = {"wrong": wrong, "unparsed": unparsed, "label": label, "q": grep}
    with open_store() as store:
        if item is not None:
            detail = data.item_page(store, run_id, item)
        else:
            shown = data.run_page(store, run_id, page=page, per_page=per_page, **filters)
            if as_json:  # streamed: one page of rows in memory at a time, however big the run
                _stream_items(store, shown["run"]["run_id"], shown["total"], filters)
                return
    if item is not None:
        if as_json:
            print_json(detail)
            return
        table = Table(title=f"Item {item} · run {detail['run']['run_id']}", show_header=False)
        table.add_row("question", shown_text(detail["item"]["input"]))  # a damaged row says so here
        table.add_row("reference", shown_text(detail["item"]["reference"]))
        table.add_row("answer", shown_text(detail["answer"]["text"]))
        g = detail["grade"]
        table.add_row("grade", shown_text(f"{g['grader']}: score {g['score']:.3f}, read as {g['extracted']!r}"
                                          + (f" ({g['rationale']})" if g["rationale"] else "")))
        out.print(table)
        out.print("[bold]The exact request[/]")
        out.print_json(data=detail["request"])
        if detail["judge"]:
            out.print("[bold]The judge's exact request[/]")
            if detail["judge"]["request"]:
                out.print_json(data=detail["judge"]["request"])
                out.print_json(data=detail["judge"]["completion"])
            else:
                out.print(shown_text(detail["judge"]["note"]))
        return
    run_row = shown["run"]
    table = Table("item", "input", "reference", "answer", "read as", "ok", title=shown_text(
        f"Run {run_row['run_id']} · {run_row['model']} · items {(shown['page'] - 1) * per_page + 1}-"
        f"{(shown['page'] - 1) * per_page + len(shown['items'])} of {shown['total']}"))
    for i in shown["items"]:
        mark = "-" if i["correct"] is None else "[green]✓[/]" if i["correct"] else "[red]✗[/]"
        table.add_row(shown_text(i["item_id"]), shown_text(i["input"][:160]), shown_text(i["reference"][:40]),
                      shown_text(i["answer"][:120].replace("\n", " ")),
                      "[red]unparsed[/]" if not i["parsed"] else shown_text(i["extracted"] or ""),
                      mark if i["correct"] is not None else f"{i['score']:.2f}")
    out.print(table)
    if shown["page"] < shown["pages"]:
        out.print(f"Page {shown['page']} of {shown['pages']}: --page {shown['page'] + 1} for more; --wrong, "
                  "--label, --grep filter.")
    confusion = shown["confusion"]
    if confusion:
        matrix = Table("reference \\ answer", *confusion["columns"], "accuracy", title="Confusion matrix (all items)")
        for row, cells, per in zip(confusion["rows"], confusion["cells"], confusion["per_label"]):
            matrix.add_row(row, *[f"[bold]{v}[/]" if c == row else str(v) for c, v in zip(confusion["columns"], cells)],
                           "-" if per["accuracy"] is None else f"{per['accuracy']:.1%} of {per['n']}")
        out.print(matrix)
    score = shown["score"]
    if score.get("accuracy") is not None:
        out.print(f"accuracy {score['accuracy']:.1%} (95% CI {score['ci_low']:.1%}-{score['ci_high']:.1%}), "
                  f"{score['correct']}/{score['n']}, {score['parse_failures']} unparsed")
    elif score["n"]:
        out.print(f"mean score {score['mean_score']:.3f} over {score['n']} items")


def _stream_items(store, run_id: str, total: int, filters: dict) -> None:  # noqa: ANN001
    """`show --json`: the run, then every matching item with its exact request, a page at a time."""
    from magister.jsonl import finite
    from magister.web import data

    run = store.run(run_id)
    print(json.dumps({"run_id": run.id, "config": run.config, "summary": finite(run.summary),
                      "filters": filters, "n": total})[:-1] + ', "items": [', end="")
    number, first = 1, True
    while True:
        chunk = data.run_page(store, run.id, page=number, per_page=1000, **filters)
        for row in chunk["items"]:
            detail = data.item_page(store, run.id, row["item_id"])
            print(("" if first else ", ") + json.dumps(finite({
                "item": detail["item"], "request": detail["request"], "answer": detail["answer"],
                "grade": detail["grade"]}), allow_nan=False), end="")
            first = False
        if number >= chunk["pages"]:
            break
        number += 1
    print("]}")


def models(as_json: JsonOpt = False) -> None:
    """The model backends, how to name a model with each, and what each supports."""
    from magister.models.base import BACKENDS, backend_class

    rows = []
    for backend in BACKENDS.values():
        cls = backend_class(backend.name)
        rows.append({"backend": backend.name, "example": backend.example, "choices": cls.supports_choices,
                     "logprobs": cls.supports_logprobs, "about": backend.summary})
    if as_json:
        print_json(rows)
        return
    table = Table("backend", "example spec", "choice scoring", "token logprobs", "about")
    for r in rows:
        table.add_row(r["backend"], r["example"], "yes" if r["choices"] else "no", "yes" if r["logprobs"] else "no",
                      r["about"])
    out.print(table)
    out.print("mock scores choices in modes first, last and random.")

