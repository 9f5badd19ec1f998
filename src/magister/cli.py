"""The `magister` command line: each command parses its options and calls the library."""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Column, Table

from magister.errors import MagisterError
from magister.types import Kind

app = typer.Typer(help="Teach small language models from big ones, and prove the result with exams.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"magister {version('magister')}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Teach small language models from big ones, and prove the result with exams."""

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model spec BACKEND:NAME (see `magister models`).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _print_json(data: object) -> None:
    """Print strict JSON: NaN and infinities (which json.dumps writes as bare NaN) become null."""
    from magister.jsonl import finite

    print(json.dumps(finite(data), default=str, allow_nan=False))


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _sit_and_report(exam, model_spec: str, grader: str, use_choices: bool, as_json: bool,  # noqa: ANN001
                    anchors=None, judge_spec: str | None = None, calibration: Path | None = None,  # noqa: ANN001
                    cascade: bool = False, calibrate_choices: bool = False) -> None:
    from magister.graders import get_grader
    from magister.judges import JUDGED
    from magister.models.base import load_model
    from magister.sit import exam_shape, sit
    from magister.store import Store

    if grader in JUDGED:  # every check before the store opens: a bad option writes nothing
        judge = load_model(judge_spec or model_spec)
    else:
        get_grader(grader)
        judge = None
    model = load_model(model_spec)
    store = Store()
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
    except KeyboardInterrupt:
        err.print("\nInterrupted: finished items are saved. Run the same command again to resume.")
        raise typer.Exit(130) from None
    except MagisterError as error:
        raise _fail(f"{error}\nFinished items are saved: run the same command again to resume.") from None
    finally:
        model.close()
        if judge is not None:
            judge.close()
        store.close()
    if as_json:
        _print_json({**summary.to_dict(), **({"estimate": estimate.to_dict()} if estimate else {})})
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


def _guard(fn):  # noqa: ANN001, ANN202
    """Print Magister's own errors as one line, not a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return fn(*args, **kwargs)
        except MagisterError as error:
            raise _fail(str(error)) from None
    return wrapper


@app.command()
@_guard
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
    shots: Annotated[int, typer.Option(help="How many worked examples to take from --fewshot.")] = 8,
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
            raise _fail(f"{anchors}: {len(missing)} anchor items are not in {path} (first: {missing[0]!r}); "
                        "fit the anchors on this exam")
        loaded = loaded.model_copy(update={"name": f"{loaded.name}-anchors",
                                           "items": [by_id[a] for a in fitted.anchor_ids]})
    _sit_and_report(loaded, model, grader, not no_choices, as_json, anchors=fitted, judge_spec=judge,
                    calibration=calibration, cascade=cascade, calibrate_choices=calibrate_choices)


@app.command()
@_guard
def demo(model: ModelOpt = "llamacpp:smollm2", as_json: JsonOpt = False,
         calibrate_choices: Annotated[bool, typer.Option("--calibrate-choices", help="Contextual calibration of "
                                                         "the constrained choices.")] = False) -> None:
    """Sit the demo exam shipped with Magister (44 items: sentiment, trivia, sums), offline."""
    from magister.exams.load import load_exam

    data = resources.files("magister") / "data"
    with resources.as_file(data / "demo.jsonl") as items, resources.as_file(data / "demo_fewshot.jsonl") as shots:
        loaded = load_exam(items, name="demo")
        loaded.fewshot = load_exam(shots).items
    _sit_and_report(loaded, model, "auto", True, as_json, calibrate_choices=calibrate_choices)


@app.command()
@_guard
def runs(exam: Annotated[Optional[str], typer.Option(help="Only runs of this exam.")] = None,
         limit: int = 50, as_json: JsonOpt = False) -> None:
    """List stored runs, newest first."""
    from magister.store import Store

    rows = Store().runs(exam=exam, limit=limit)
    if as_json:
        _print_json([{"run_id": r.id, "created_at": r.created_at, "status": r.status, "exam": r.exam_name,
                      "exam_version": r.exam_version, "model": r.model, "grader": r.grader, "n": r.n_items,
                      **({k: r.summary[k] for k in ("accuracy", "ci_low", "ci_high")} if r.summary else {})}
                     for r in rows])
        return
    table = Table("when", "exam", "model", "grader", "items", "accuracy (95% CI)", "status")
    table.columns.insert(0, Column("run", no_wrap=True, min_width=22))  # ids are never cut: `show` takes them whole
    for r in rows:
        score = (f"{r.summary['accuracy']:.1%} ({r.summary['ci_low']:.1%}-{r.summary['ci_high']:.1%})"
                 if r.summary else "-")
        table.add_row(r.id, time.strftime("%m-%d %H:%M", time.localtime(r.created_at)), r.exam_name, r.model,
                      r.grader, str(r.n_items), score, r.status)
    out.print(table)


@app.command()
@_guard
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
    from magister.store import Store
    from magister.web import data

    from magister.jsonl import finite

    store = Store()
    if item is not None:
        detail = data.item_page(store, run_id, item)
        if as_json:
            _print_json(detail)
            return
        table = Table(title=f"Item {item} · run {detail['run']['run_id']}", show_header=False)
        table.add_row("question", detail["item"]["input"])
        table.add_row("reference", detail["item"]["reference"])
        table.add_row("answer", detail["answer"]["text"])
        g = detail["grade"]
        table.add_row("grade", f"{g['grader']}: score {g['score']:.3f}, read as {g['extracted']!r}"
                      + (f" ({g['rationale']})" if g["rationale"] else ""))
        out.print(table)
        out.print("[bold]The exact request[/]")
        out.print_json(data=detail["request"])
        if detail["judge"]:
            out.print("[bold]The judge's exact request[/]")
            if detail["judge"]["request"]:
                out.print_json(data=detail["judge"]["request"])
                out.print_json(data=detail["judge"]["completion"])
            else:
                out.print(detail["judge"]["note"])
        return
    filters = {"wrong": wrong, "unparsed": unparsed, "label": label, "q": grep}
    shown = data.run_page(store, run_id, page=page, per_page=per_page, **filters)
    run_row = shown["run"]
    if as_json:  # streamed: one page of rows in memory at a time, however big the run
        run = store.run(run_row["run_id"])
        print(json.dumps({"run_id": run.id, "config": run.config, "summary": finite(run.summary),
                          "filters": filters, "n": shown["total"]})[:-1] + ', "items": [', end="")
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
        return
    table = Table("item", "input", "reference", "answer", "read as", "ok", title=f"Run {run_row['run_id']} · "
                  f"{run_row['model']} · items {(shown['page'] - 1) * per_page + 1}-"
                  f"{(shown['page'] - 1) * per_page + len(shown['items'])} of {shown['total']}")
    for i in shown["items"]:
        mark = "-" if i["correct"] is None else "[green]✓[/]" if i["correct"] else "[red]✗[/]"
        table.add_row(i["item_id"], i["input"][:160], i["reference"][:40], i["answer"][:120].replace("\n", " "),
                      "[red]unparsed[/]" if not i["parsed"] else (i["extracted"] or ""),
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


@app.command()
@_guard
def compare(run_a: Annotated[str, typer.Argument(help="Run id (or its unique ending).")],
            run_b: Annotated[str, typer.Argument(help="Run id to compare with, on the same items.")],
            discordant: Annotated[int, typer.Option(min=0, help="How many of the items where they differ to "
                                                    "list.")] = 20,
            as_json: JsonOpt = False) -> None:
    """Paired comparison of two runs on the same items: McNemar's exact test, or a paired bootstrap for scores."""
    from magister.rankings import compare_runs
    from magister.store import Store

    store = Store()
    result, a, b = compare_runs(store, run_a, run_b)
    if as_json:
        from magister.web.data import compare_page

        differ = compare_page(store, a.id, b.id, per_page=max(discordant, 1), discordant_only=True)["items"]
        _print_json({"run_a": a.id, "run_b": b.id, "model_a": a.model, "model_b": b.model, **result.to_dict(),
                     "discordant_items": differ[:discordant]})
        return
    table = Table(title=f"{a.model} (A) vs {b.model} (B) on {result.n} shared items", show_header=False)
    table.add_row("A", f"{result.mean_a:.1%}  run {a.id}")
    table.add_row("B", f"{result.mean_b:.1%}  run {b.id}")
    table.add_row("A - B", f"[bold]{result.diff:+.1%}[/]  95% CI {result.ci_low:+.1%} to {result.ci_high:+.1%}")
    table.add_row("p-value", f"{result.p_value:.3g}  ({result.test})")
    if result.a_only is not None:
        table.add_row("discordant items", f"{result.a_only} only A right, {result.b_only} only B right")
    out.print(table)
    from magister.web.data import compare_page

    differ = compare_page(store, a.id, b.id, per_page=discordant, discordant_only=True)
    if differ["items"]:
        items = Table("item", "input", "reference", "A's answer", "B's answer", title=f"Items where they differ "
                      f"({len(differ['items'])} of {differ['total']}; --discordant N for more)")
        for i in differ["items"]:
            mark = lambda side: "[green]✓[/] " if side["correct"] else "[red]✗[/] "  # noqa: E731
            items.add_row(i["item_id"], (i["input"] or "")[:70], (i["reference"] or "")[:30],
                          mark(i["a"]) + i["a"]["answer"][:40].replace("\n", " "),
                          mark(i["b"]) + i["b"]["answer"][:40].replace("\n", " "))
        out.print(items)


@app.command()
@_guard
def leaderboard(exam: Annotated[Optional[str], typer.Option(help="Rank the latest run of each model on this "
                                                            "exam.")] = None,
                battles: Annotated[Optional[Path], typer.Option(
                    help="JSONL of {prompt_id, model_a, model_b, winner: a|b|tie}: a Bradley-Terry leaderboard.")] = None,
                anchor: Annotated[Optional[str], typer.Option(help="Model fixed at rating 1000 (default: the "
                                                              "mean is 1000).")] = None,
                rounds: Annotated[int, typer.Option(help="Bootstrap rounds.")] = 1000,
                resample: Annotated[str, typer.Option(help="Bootstrap unit: prompt (all battles of a prompt move "
                                                      "together) or game.")] = "prompt",
                seed: int = 0, as_json: JsonOpt = False) -> None:
    """Rank models: accuracy on one exam, or Bradley-Terry ratings from pairwise battles, with 95% CIs."""
    if (exam is None) == (battles is None):
        raise _fail("give exactly one of --exam NAME or --battles PATH")
    if battles is not None:
        from magister.stats.bradley_terry import leaderboard as bt_leaderboard
        from magister.stats.bradley_terry import load_battles

        if resample not in ("prompt", "game"):
            raise _fail(f"--resample must be prompt or game, not {resample!r}")
        loaded = load_battles(battles)
        try:
            board = bt_leaderboard(loaded, rounds=rounds, resample=resample,  # type: ignore[arg-type]
                                   anchor=anchor, seed=seed)
        except ValueError as error:
            raise _fail(str(error)) from None
        if as_json:
            _print_json([r.to_dict() for r in board])
            return
        table = Table("rank", "model", "rating", "95% CI", "battles",
                      title=f"Bradley-Terry, {len(loaded)} battles, {rounds} {resample}-level bootstrap rounds")
        for r in board:
            table.add_row(str(r.rank), r.model, f"{r.rating:.0f}", f"{r.ci_low:.0f} - {r.ci_high:.0f}", str(r.battles))
        out.print(table)
        for r in board:
            if r.unbounded:
                err.print(f"[yellow]warning:[/] {r.model} {'lost' if r.unbounded == 'above' else 'won or drew'} none "
                          f"of its {r.battles} battles: its rating has no finite estimate (the shown point comes from "
                          f"a weak prior), so its interval is open {r.unbounded}. More battles against stronger "
                          "(or weaker) models pin it down.")
        if anchor is not None:
            err.print(f"{anchor} is the anchor, fixed at 1000: its interval is a point by construction, and the "
                      "others' intervals measure them against it.")
        return
    from magister.rankings import exam_leaderboard
    from magister.store import Store

    standings = exam_leaderboard(Store(), exam)  # type: ignore[arg-type]
    if as_json:
        _print_json([s.to_dict() for s in standings])
        return
    table = Table("rank", "model", "accuracy", "95% CI", "items", "run", title=f"Exam {exam}")
    for s in standings:
        table.add_row(str(s.rank), s.model, f"{s.score:.1%}", f"{s.ci_low:.1%} - {s.ci_high:.1%}", str(s.n), s.run_id)
    out.print(table)


@app.command()
@_guard
def anchors(source: Annotated[Optional[Path], typer.Argument(help="Correctness CSV: an item-id column, then one "
                                                             "0/1 column per model.")] = None,
            exam: Annotated[Optional[str], typer.Option(help="Build the matrix from the latest stored run of each "
                                                        "model on this exam instead.")] = None,
            out_path: Annotated[Path, typer.Option("--out", "-o", help="Where to write the anchors.")] = Path(
                "anchors.json"),
            k: Annotated[int, typer.Option("--k", help="Number of anchor items.")] = 100,
            dims: Annotated[int, typer.Option(help="IRT dimensions.")] = 1,
            embedding: Annotated[str, typer.Option(help="Cluster items by their correctness vector or their IRT "
                                                   "parameters.")] = "correctness",
            folds: Annotated[int, typer.Option(help="Cross-validation folds over models, for lambda and the error "
                                               "bar.")] = 3,
            seed: int = 0, as_json: JsonOpt = False) -> None:
    """Fit an IRT model and pick K anchor items; `magister exam ... --anchors FILE` then sits only those."""
    from magister.stats.anchors import fit_anchors, read_matrix

    if (source is None) == (exam is None):
        raise _fail("give exactly one of a correctness CSV or --exam NAME")
    if not out_path.parent.is_dir():  # before the fit, not after it
        raise _fail(f"--out {out_path}: the folder {out_path.parent} does not exist")
    if embedding not in ("correctness", "irt"):
        raise _fail(f"--embedding must be correctness or irt, not {embedding!r}")
    if source is not None:
        matrix, items, names = read_matrix(source)
    else:
        from magister.rankings import correctness_matrix
        from magister.store import Store

        matrix, items, names = correctness_matrix(Store(), exam)  # type: ignore[arg-type]
    start = time.perf_counter()
    with out.status(f"Fitting IRT on {len(names)} models x {len(items)} items, {folds}-fold cross-validation"):
        try:
            fitted = fit_anchors(matrix, items, names, k=k, dims=dims, embedding=embedding,  # type: ignore[arg-type]
                                 folds=folds, seed=seed, exam=exam or source.stem)  # type: ignore[union-attr]
        except ValueError as error:
            raise _fail(str(error)) from None
    fitted.save(out_path)
    report = {"out": str(out_path), "models": len(names), "items": len(items), "k": len(fitted.anchor_index),
              "lambda": fitted.lam, "fit_s": time.perf_counter() - start, **fitted.cv}
    if as_json:
        _print_json(report)
        return
    out.print(f"Wrote {len(fitted.anchor_index)} anchors to {out_path} ({report['fit_s']:.0f} s). Cross-validated "
              f"over the {len(names)} models: mean abs. error of gp-IRT {fitted.cv['mae_gp_irt']:.3f}, anchor mean "
              f"{fitted.cv['mae_anchor']:.3f}, p-IRT {fitted.cv['mae_p_irt']:.3f}; lambda {fitted.lam:.2f}.")
    out.print(f"Estimate a model with: magister exam EXAM --anchors {out_path} --model SPEC")


@app.command("judge-check")
@_guard
def judge_check(
    path: Annotated[Optional[Path], typer.Argument(help="Human-labelled JSONL (or --run).")] = None,
    run: Annotated[Optional[str], typer.Option(help="Instead of a file: the human labels stored for this run "
                                               "(given in `magister view`).")] = None,
    grader: Annotated[str, typer.Option(help="match, checklist, rubric or pairwise; or a deterministic grader "
                                        "(rules, contains, exact, numeric ...) to compare with.")] = "match",
    judge: Annotated[str, typer.Option(help="Judge model spec.")] = "llamacpp:smollm2",
    baseline: Annotated[Optional[str], typer.Option(help="A deterministic grader graded on the same rows, with a "
                                                    "paired bootstrap test of the kappa difference.")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="match, rubric: fit the verdict rule on the human labels "
                                            "(cross-validated; held-out kappa reported).")] = False,
    calibration_out: Annotated[Optional[Path], typer.Option(help="Where --calibrate saves the calibration "
                                                            "(default: next to the data, NAME.calibration.json).")]
    = None,
    cascade: Annotated[bool, typer.Option("--cascade", help="match: the rules settle what they can first.")]
    = False,
    plot: Annotated[Optional[Path], typer.Option(help="Write the reliability curve (scores vs human verdicts) "
                                                 "as a PNG here.")] = None,
    question: Annotated[str, typer.Option(help="Field with the question.")] = "question",
    reference: Annotated[str, typer.Option(help="Field with the reference answer.")] = "reference",
    response: Annotated[str, typer.Option(help="Field with the graded response.")] = "response",
    instruction: Annotated[str, typer.Option(help="Field with the instruction (pairwise).")] = "instruction",
    response_a: Annotated[str, typer.Option("--response-a", help="Field with response A (pairwise).")] = "response_a",
    response_b: Annotated[str, typer.Option("--response-b", help="Field with response B (pairwise).")] = "response_b",
    human: Annotated[Optional[list[str]], typer.Option(help="Field with a human label; repeat for each "
                                                       "annotator.")] = None,
    match_threshold: Annotated[Optional[float], typer.Option(help="Numeric ratings: match = rating >= this.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N rows.")] = None,
    unguarded: Annotated[bool, typer.Option("--unguarded", help="Plain prompts, without the prompt-injection "
                                            "defences (for comparison).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Grade human-labelled data with a judge and report its agreement with the humans."""
    from magister.judges import Judge
    from magister.judges.check import Columns, check
    from magister.models.base import load_model
    from magister.store import Store

    from magister.graders.deterministic import GRADERS

    if (path is None) == (run is None):
        raise _fail("give exactly one of a labelled JSONL file or --run RUN_ID")
    if run is not None:  # the labels stored for a run, written where the calibration file goes too
        from magister.labels import labelled_rows, write_labels

        store = Store()
        try:
            rows = labelled_rows(store, run)
        finally:
            store.close()
        from magister.store import user_dir

        path = write_labels(rows, user_dir() / f"labels-{rows[0]['run_id']}.jsonl")
        human = ["human"]
    if grader not in ("match", "checklist", "rubric", "pairwise", *GRADERS):
        raise _fail(f"unknown grader '{grader}'; choose match, checklist, rubric, pairwise or one of "
                    f"{', '.join(GRADERS)}")
    if baseline is not None and baseline not in GRADERS:
        raise _fail(f"--baseline takes a deterministic grader ({', '.join(GRADERS)}), not '{baseline}'")
    columns = Columns(question=question, reference=reference, response=response, instruction=instruction,
                      response_a=response_a, response_b=response_b, human=human or ["human"],
                      match_threshold=match_threshold)
    if grader in GRADERS:
        report = check(path, grader, None, columns, limit=limit)
    else:
        model = load_model(judge)
        store = Store()
        try:
            report = check(path, grader, Judge(model, store, guarded=not unguarded, cascade=cascade), columns,
                           limit=limit, baseline=baseline, calibrate=calibrate)
        finally:
            model.close()
            store.close()
    fitted = report.pop("_calibration", None)
    if fitted is not None:
        target = calibration_out or path.with_name(path.stem + ".calibration.json")
        fitted.source = str(path)
        fitted.save(target)
        report["calibration"]["file"] = str(target)
    if plot is not None and report.get("calibration_curve"):
        _reliability_plot(report["calibration_curve"], plot, f"{grader} · {judge}")
    if as_json:
        _print_json(report)
        return
    table = Table(title=f"Judge {judge} · {grader} · {report['n']} rows of {path.name}", show_header=False)
    low, high = report["kappa_ci"]
    table.add_row("Cohen's kappa", f"[bold]{report['kappa']:.3f}[/]  95% CI {low:.3f} - {high:.3f}")
    table.add_row("accuracy (agreement)", f"{report['accuracy']:.1%}")
    if "human_human_kappa" in report:
        table.add_row("human-human kappa (ceiling)", f"{report['human_human_kappa']:.3f}  "
                      f"(agreement {report['human_human_accuracy']:.1%})")
    if "fitted" in report:
        table.add_row("kappa, weights fitted (5-fold)", f"{report['fitted']['kappa']:.3f}")
    if "weighted_kappa" in report:
        table.add_row("weighted kappa (1-5)", f"{report['weighted_kappa']['kappa']:.3f}")
    if "correlations" in report:
        c = report["correlations"]
        table.add_row("score vs human rating", f"Spearman {c['spearman']:.3f} · Kendall {c['kendall']:.3f} · "
                      f"Pearson {c['pearson']:.3f}")
    if "flip_rate" in report:
        table.add_row("order flip rate", f"{report['flip_rate']:.1%} (counted as ties)")
        bias = report.get("position_bias")
        table.add_row("position bias", "-" if bias is None else f"P(first shown is better) = {bias:.2f} (0.50: none)")
        d = report["debiased"]
        table.add_row("debiased verdicts (both orders' log-odds)", f"kappa {d['kappa']:.3f} · agreement "
                      f"{d['accuracy']:.1%}")
    if "alt_test" in report:
        a = report["alt_test"]
        table.add_row("alt-test", f"{'passed' if a['passed'] else 'failed'}: winning rate {a['winning_rate']:.2f}, "
                      f"advantage probability {a['advantage_probability']:.2f} (epsilon {a['epsilon']})")
    if "calibration" in report:
        c = report["calibration"]
        table.add_row(f"calibrated ({c['method']}, held out, {c['folds']}-fold)",
                      f"[bold]kappa {c['kappa']:.3f}[/]  95% CI {c['kappa_ci'][0]:.3f} - {c['kappa_ci'][1]:.3f} · "
                      f"agreement {c['accuracy']:.1%} · saved to {c.get('file', '-')}")
    if "baseline" in report:
        b, d = report["baseline"], report["vs_baseline"]
        table.add_row(f"baseline: {b['grader']}", f"kappa {b['kappa']:.3f}; difference {d['difference']:+.3f} "
                      f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}], paired bootstrap p = {d['p_value']:.3g}")
    if "judge_share" in report:
        table.add_row("cascade", f"{report['judge_share']:.0%} of answers reached the judge")
    if "confusion" in report:
        m = report["confusion"]
        table.add_row("confusion (grader vs humans)", f"right/right {m['tp']} · right/wrong {m['fp']} · "
                      f"wrong/right {m['fn']} · wrong/wrong {m['tn']}")
    table.add_row("parse failures", str(report["parse_failures"]))
    table.add_row("repeat agreement", f"{report['repeat_agreement']:.1%} (a second, uncached judgment)")
    if "warning" in report:
        table.add_row("[yellow]warning[/]", f"[yellow]{report['warning']}[/]")
    table.add_row("cost", f"{report['tokens_per_grade']:.0f} tokens per grade · {report['grades_per_s']:.2f} grades/s")
    out.print(table)


def _reliability_plot(curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    axis.plot([b["mean_score"] for b in curve], [b["human_right"] for b in curve], marker="o", label="grader")
    for b in curve:
        axis.annotate(str(b["n"]), (b["mean_score"], b["human_right"]), fontsize=7, xytext=(3, 3),
                      textcoords="offset points")
    axis.set(xlabel="grader score (bin mean)", ylabel="share the humans called right", title=title, xlim=(0, 1),
             ylim=(0, 1))
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


@app.command()
@_guard
def calibrate(
    path: Annotated[Optional[Path], typer.Argument(help="Human-labelled JSONL (question, reference, response, "
                                                   "human), or --run.")] = None,
    run: Annotated[Optional[str], typer.Option(help="Instead of a file: the human labels stored for this run.")]
    = None,
    judge: Annotated[str, typer.Option(help="Judge model spec.")] = "llamacpp:smollm2",
    grader: Annotated[str, typer.Option(help="The judged grader to calibrate: match (P(yes)) or rubric (score).")]
    = "match",
    human: Annotated[Optional[list[str]], typer.Option(help="Field with a human label; repeat for each "
                                                       "annotator.")] = None,
    match_threshold: Annotated[Optional[float], typer.Option(help="Numeric ratings: match = rating >= this.")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Calibration file (default "
                                                     "NAME.calibration.json next to the data).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N rows.")] = None,
) -> None:
    """Fit the `match` (or `rubric`) grader's verdict rule on human labels; use it with `exam --calibration FILE`."""
    if grader not in ("match", "rubric"):
        raise _fail(f"--grader: match or rubric can be calibrated, not '{grader}'")
    judge_check(path, run=run, grader=grader, judge=judge, baseline="rules", calibrate=True, calibration_out=out_path,
                cascade=False, plot=None, question="question", reference="reference", response="response",
                instruction="instruction", response_a="response_a", response_b="response_b", human=human,
                match_threshold=match_threshold, limit=limit, unguarded=False, as_json=False)


@app.command()
@_guard
def labels(run_id: Annotated[str, typer.Argument(help="Run id (or its unique start or ending).")],
           out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write a judge-check JSONL here.")]
           = None, as_json: JsonOpt = False) -> None:
    """The human labels given to a run's answers in `magister view`, with the run's own grades."""
    from magister.labels import labelled_rows, write_labels
    from magister.stats.agreement import kappa
    from magister.store import Store

    store = Store()
    try:
        rows = labelled_rows(store, run_id)
    finally:
        store.close()
    if out_path is not None:
        write_labels(rows, out_path)
    if as_json:
        _print_json(rows)
        return
    graded = [r for r in rows if r["grader_correct"] is not None]
    agree = sum(r["human"] == r["grader_correct"] for r in graded)
    out.print(f"{len(rows)} labelled answers in run {rows[0]['run_id']}; the grader ({rows[0]['grader']}) agrees on "
              f"{agree} of {len(graded)}" + (f", kappa {kappa([r['grader_correct'] for r in graded], [r['human'] for r in graded]):.2f}"
                                              if len(graded) >= 2 else "") + "."
              + (f" Wrote {out_path}." if out_path else ""))


@app.command()
@_guard
def battles(
    path: Annotated[Path, typer.Argument(help="JSONL of {instruction, response_a, response_b}, with prompt_id (or id) "
                                         "and model_a / model_b where the file has them.")],
    judge: Annotated[str, typer.Option(help="Judge model spec.")] = "llamacpp:smollm2",
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Battles JSONL for `leaderboard --battles`.")] = Path(
        "battles.jsonl"),
    model_a: Annotated[str, typer.Option(help="Model name for rows without a model_a field.")] = "A",
    model_b: Annotated[str, typer.Option(help="Model name for rows without a model_b field.")] = "B",
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N pairs.")] = None,
) -> None:
    """Judge pairs of responses in both orders and write the battles (order flips become ties)."""
    from magister.judges import Judge
    from magister.jsonl import read_numbered
    from magister.models.base import load_model
    from magister.progress import progress_bar
    from magister.store import Store

    numbered = read_numbered(path, ["instruction", "response_a", "response_b"], limit)
    rows = [{**r, "prompt_id": str(r.get("prompt_id", r.get("id", line))), "model_a": r.get("model_a", model_a),
             "model_b": r.get("model_b", model_b)} for line, r in numbered]
    model = load_model(judge)
    store = Store()
    try:
        with progress_bar(err) as bar:
            task = bar.add_task(f"battles · {judge}", total=2 * len(rows), rate="both orders")
            verdicts = Judge(model, store, on_calls=lambda k: bar.advance(task, k)).pairwise(
                [(r["instruction"], r["response_a"], r["response_b"]) for r in rows])
    finally:
        model.close()
        store.close()
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text("".join(json.dumps({"prompt_id": r["prompt_id"], "model_a": r["model_a"],
                                       "model_b": r["model_b"], "winner": v.winner, "debiased": v.debiased,
                                       "p_a": round(v.p_a, 4), "flipped": v.flipped}) + "\n"
                           for r, v in zip(rows, verdicts)))
    tmp.replace(out_path)
    flips = sum(v.flipped for v in verdicts)
    out.print(f"Wrote {len(verdicts)} battles to {out_path}: order flip rate {flips / len(verdicts):.1%} "
              f"(flips are ties). Rank with: magister leaderboard --battles {out_path}")


def _opt(help: str, *names: str):  # noqa: A002, ANN202
    return typer.Option(*names, help=help)


@app.command()
@_guard
def write(
    like: Annotated[Path, typer.Option(help="Example items of the task (any exam file); the label set comes from "
                                       "all of them.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Where to write the new exam (JSONL).")],
    teacher: Annotated[str, typer.Option(help="Teacher model spec.")] = "llamacpp:smollm2",
    n: Annotated[int, typer.Option("--n", help="Items to write (shared over the labels).")] = 100,
    per_label: Annotated[Optional[int], typer.Option(help="Items per label instead of --n.")] = None,
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated label set (default: the examples' labels).")]
    = None,
    missed: Annotated[Optional[str], typer.Option(help="Run id of a student on labelled items: weight the labels by "
                                                  "how often it missed them.")] = None,
    exclude: Annotated[Optional[Path], typer.Option(help="Items the new ones must not copy (the test set): "
                                                    "near-copies are rejected as contamination.")] = None,
    verify: Annotated[str, typer.Option(help="off, teacher or majority.")] = "teacher",
    verifier: Annotated[Optional[str], typer.Option(help="Model that verifies (default: the teacher).")] = None,
    samples: Annotated[int, typer.Option(help="Samples for --verify majority.")] = 3,
    per_call: Annotated[int, typer.Option(help="Items the teacher writes per call.")] = 10,
    temperature: Annotated[float, typer.Option(help="Teacher sampling temperature.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Sampling seed: the same seed repeats (and re-uses) the same calls.")] = 0,
    input: Annotated[Optional[str], typer.Option("--input", help="Column with the question.")] = None,
    reference: Annotated[Optional[str], typer.Option(help="Column with the reference answer.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Have the teacher write a new exam like the examples: label-balanced, deduplicated, verified."""
    from magister.exams.load import FieldMap, item_row, load_exam
    from magister.synth.write import write_exam
    from magister.models.base import load_model
    from magister.store import Store
    from magister.jsonl import write_atomic, write_json

    if verify not in ("off", "teacher", "majority"):
        raise _fail(f"--verify must be off, teacher or majority, not '{verify}'")
    fields = FieldMap(input=input, reference=reference,
                      labels=tuple(x.strip() for x in labels.split(",")) if labels else None)
    examples = load_exam(like, fields)
    excluded = load_exam(exclude, FieldMap(input=input, reference=reference)).items if exclude else []
    label_set = sorted({lab for i in examples.items for lab in i.labels or ()})
    count = per_label * max(len(label_set), 1) if per_label else n
    teacher_model = load_model(teacher)
    verifier_model = load_model(verifier) if verifier else None
    store = Store()
    weights = None
    try:
        if missed:
            try:
                run = store.run(missed)
            except KeyError:
                raise _fail(f"no run '{missed}' in the store (see `magister runs`)") from None
            references = {i.id: i.reference for i in store.exam(run.exam_version).items}
            misses = [references[a.item_id] for a, g in store.answers(run.id) if g.correct is False]
            weights = {lab: 1.0 + misses.count(lab) for lab in label_set}
        written = write_exam(examples, teacher_model, store, n=count, labels=label_set or None, weights=weights,
                             per_call=per_call, exclude=excluded, verify_mode=verify, verifier=verifier_model,
                             samples=samples, temperature=temperature, seed=seed, progress=not as_json)
    except KeyboardInterrupt:
        err.print("\nInterrupted: every finished teacher call is cached. Run the same command again to resume.")
        raise typer.Exit(130) from None
    finally:
        teacher_model.close()
        if verifier_model is not None:
            verifier_model.close()
        store.close()
    rows = [item_row(i) for i in written.items]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, "".join(json.dumps(r) + "\n" for r in rows))
    rejected_path = out_path.with_name(out_path.stem + ".rejected.json")
    write_json(rejected_path, written.rejected())
    summary = {**written.summary(), "out": str(out_path), "rejected_file": str(rejected_path), "weights": weights}
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"Wrote {len(written.items)} items to {out_path}", show_header=False)
    table.add_row("teacher", f"{teacher} ({written.calls} calls, {written.tokens} tokens)")
    table.add_row("kept by label", ", ".join(f"{k} {v}" for k, v in sorted(summary["kept_by_label"].items())))
    table.add_row("drafts", f"{len(written.drafts)} ({written.parse_failures} calls gave nothing readable)")
    table.add_row("rejected", ", ".join(f"{k} {v}" for k, v in written.rejections.items()) or "none")
    if written.verifier:
        v = written.verifier
        table.add_row("verifier check", f"{v['accuracy']:.0%} of {v['n']} labelled examples (most common label "
                      f"{v['majority']:.0%}): {'used' if v['trusted'] else 'NOT used'}")
    if written.contamination:
        c = written.contamination
        table.add_row("overlap with --exclude", f"nearest ROUGE-L mean {c['rouge_l_nearest_mean']:.2f}, max "
                      f"{c['rouge_l_nearest_max']:.2f}; {c['at_least_0.5']} items >= 0.5; "
                      f"{c['sharing_8gram']} share an 8-gram")
    table.add_row("rejections", str(rejected_path))
    out.print(table)
    if len(written.items) < count:
        err.print(f"[yellow]Only {len(written.items)} of {count} items survived the filters.[/]")


@app.command()
@_guard
def teach(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config; every field is also a flag below, or "
                                                          "--set FIELD=VALUE.")] = None,
    seed: Annotated[Optional[Path], _opt("Labelled training examples (the seed set).")] = None,
    exam: Annotated[Optional[Path], _opt("The held-out exam.")] = None,
    input: Annotated[Optional[str], _opt("Column with the question (seed and exam).", "--input")] = None,
    reference: Annotated[Optional[str], _opt("Column with the answer (seed and exam).")] = None,
    teacher: Annotated[Optional[str], _opt("Teacher model spec (default llamacpp:smollm2).")] = None,
    student: Annotated[Optional[str], _opt("'smollm2', a GGUF file or a transformers model directory.")] = None,
    verifier: Annotated[Optional[str], _opt("Model that verifies new examples (default: the teacher).")] = None,
    rounds: Annotated[Optional[int], _opt("Teaching rounds after round 0.")] = None,
    strategies: Annotated[Optional[str], _opt("Comma-separated: contrast (default), similar, rephrase, explain, "
                                              "new, replay.")] = None,
    per_item: Annotated[Optional[int], _opt("New examples per mined item.")] = None,
    show_wrong_answer: Annotated[Optional[bool], _opt("Show the teacher the student's wrong answer.",
                                                      "--show-wrong-answer/--hide-wrong-answer")] = None,
    mine: Annotated[Optional[str], _opt("folds (out-of-fold errors against the seed's human labels; default), "
                                        "seed (LLM2LLM, in-sample), all (also synthetic examples) or probe (a "
                                        "fresh exam the teacher writes each round).")] = None,
    folds: Annotated[Optional[int], _opt("Folds of the seed for --mine folds and the dev score.")] = None,
    fold_epochs: Annotated[Optional[float], _opt("Training epochs of the fold students (default: --epochs).")]
    = None,
    dev: Annotated[Optional[Path], _opt("Labelled dev file: the dev score (default: out-of-fold accuracy on "
                                        "the seed). Patience and the chosen round read it, never the exam.")] = None,
    select: Annotated[Optional[str], _opt("dev (the round with the best dev score) or last.")] = None,
    verify_gate: Annotated[Optional[str], _opt("student (the verifier must beat the out-of-fold student, else it "
                                               "only vetoes) or majority (the most common label).")] = None,
    contamination_ngram: Annotated[Optional[int], _opt("Words in a run shared with an exam item that make a new "
                                                       "input contamination.")] = None,
    probe_size: Annotated[Optional[int], _opt("Items of each round's probe exam (--mine probe).")] = None,
    dedupe: Annotated[Optional[str], _opt("rouge, embedding or off.")] = None,
    dedupe_threshold: Annotated[Optional[float], _opt("Similarity at or above which a new example is a duplicate.")]
    = None,
    verify: Annotated[Optional[str], _opt("off, teacher or majority.")] = None,
    verify_samples: Annotated[Optional[int], _opt("Samples for --verify majority.")] = None,
    retrain: Annotated[Optional[str], _opt("base (each round from the base model) or continue.")] = None,
    patience: Annotated[Optional[int], _opt("Stop after N rounds without a better dev score.")] = None,
    budget_calls: Annotated[Optional[int], _opt("Teacher call budget (writing and verifying).")] = None,
    budget_tokens: Annotated[Optional[int], _opt("Teacher token budget.")] = None,
    method: Annotated[Optional[str], _opt("lora or full fine-tuning.")] = None,
    epochs: Annotated[Optional[float], _opt("Training epochs per round.")] = None,
    lora_r: Annotated[Optional[int], _opt("LoRA rank.")] = None,
    learning_rate: Annotated[Optional[float], _opt("Learning rate.")] = None,
    max_length: Annotated[Optional[int], _opt("Tokens per training example.")] = None,
    train_seed: Annotated[Optional[int], _opt("Training seed (shuffle order, adapter initialisation); rerun "
                                              "with others to see the run-to-run spread.")] = None,
    train_seeds: Annotated[Optional[str], _opt("Comma-separated training seeds: run the loop once per seed "
                                               "(OUT/seed-N) and compare the last round with round 0 over all "
                                               "of them (intervals that count the spread between trainings).")]
    = None,
    exam_limit: Annotated[Optional[int], _opt("Use only the first N exam items.")] = None,
    out_dir: Annotated[Optional[Path], _opt("Run directory (default runs/teach).", "--out")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")] = False,
    set_fields: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Any config field, dotted for nested ones, the value read as YAML: --set temperature=0.5 "
                      "--set train.lora_alpha=32 --set 'label_descriptions={human: a person}'. Repeatable; "
                      "wins over the flags above.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Teach a student: fine-tune, mine its errors, have the teacher write new examples, retrain, re-sit.

    The defaults are the teaching benchmark's Magister arm: errors mined out of fold against the seed's \
human labels (--mine folds), the teacher writing inputs of the human label that could be mistaken for the \
student's answer (--strategies contrast), a verifier that must beat the out-of-fold student or may only veto \
(--verify-gate student), exact and 8-gram contamination checks against the exam, and the round chosen by the \
dev score (--select dev), never by the exam.
    """
    from magister.teach import Teach, load_config
    from magister.teach.config import parse_sets
    from magister.teach import report as teach_report
    from magister.web import report as web_report

    overrides = {"seed": seed, "exam": exam, "fields.input": input, "fields.reference": reference,
                 "teacher": teacher, "student": student, "verifier": verifier, "rounds": rounds,
                 "strategies": [s.strip() for s in strategies.split(",")] if strategies else None,
                 "per_item": per_item, "show_wrong_answer": show_wrong_answer, "mine": mine,
                 "probe_size": probe_size, "dedupe": dedupe, "folds": folds, "fold_epochs": fold_epochs,
                 "dev": str(dev) if dev else None, "select": select, "verify_gate": verify_gate,
                 "contamination_ngram": contamination_ngram,
                 "dedupe_threshold": dedupe_threshold, "verify": verify, "verify_samples": verify_samples,
                 "retrain": retrain, "patience": patience, "budget.calls": budget_calls,
                 "budget.tokens": budget_tokens, "train.method": method, "train.epochs": epochs,
                 "train.lora_r": lora_r, "train.learning_rate": learning_rate, "train.max_length": max_length,
                 "train.seed": train_seed, "exam_limit": exam_limit, "out": out_dir}
    settings = load_config(config, {**overrides, **parse_sets(set_fields or [])})
    if train_seeds:
        _teach_seeds(settings, train_seeds, resume, as_json)
        return
    run = Teach(settings, resume=resume, progress=not as_json)
    try:
        run.run()
    except KeyboardInterrupt:
        err.print(f"\nInterrupted: finished stages are saved. Continue with: magister teach ... --out "
                  f"{settings.out} --resume")
        raise typer.Exit(130) from None
    report = run.report()
    paths = web_report.write(report, settings.out)
    if as_json:
        _print_json(report)
        return
    out.print(teach_report.table(report), width=max(out.width, 120))
    out.print(f"Report: {paths['html']} · learning curve: {paths['png']} · JSON: {paths['json']}")


@app.command()
@_guard
def difficulty(
    exam: Annotated[str, typer.Argument(help="Exam name (as in `magister runs`), e.g. a written probe exam.")],
    keep: Annotated[str, typer.Option(help="all, or hard: only items that at most --hard-share of the models got "
                                      "right.")] = "all",
    hard_share: Annotated[float, typer.Option(help="Share of models right at or below which an item is hard.")]
    = 0.5,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the kept items (JSONL) here, "
                                                     "with their difficulty in the row.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-item difficulty of an exam several models have sat: share correct and IRT difficulty."""
    from magister.exams.load import item_row
    from magister.rankings import item_difficulty, latest_runs
    from magister.store import Store

    if keep not in ("all", "hard"):
        raise _fail(f"--keep must be all or hard, not '{keep}'")
    store = Store()
    try:
        rows, models = item_difficulty(store, exam)
        items = {i.id: i for i in store.exam(latest_runs(store, exam)[0].exam_version).items}
    finally:
        store.close()
    kept = [r for r in rows if keep == "all" or r["share_correct"] <= hard_share]
    if out_path is not None:
        lines = []
        for r in kept:
            lines.append(json.dumps({**item_row(items[r["item_id"]]), "share_correct": r["share_correct"],
                                     "irt_difficulty": r["irt_difficulty"]}))
        out_path.write_text("".join(line + "\n" for line in lines))
    if as_json:
        _print_json({"exam": exam, "models": models, "items": rows, "kept": len(kept)})
        return
    table = Table(title=f"{exam}: {len(rows)} items, {len(models)} models ({', '.join(models)}); hardest first")
    for column in ("item", "share correct", "IRT difficulty", "input"):
        table.add_column(column)
    for r in rows[:30]:
        b = r["irt_difficulty"]
        table.add_row(r["item_id"], f"{r['share_correct']:.0%} of {r['models']}", "-" if b is None else f"{b:+.2f}",
                      items[r["item_id"]].input[:60])
    out.print(table)
    if len(models) < 2:
        err.print("[yellow]One model sat this exam: IRT difficulty needs two or more.[/]")
    if out_path is not None:
        out.print(f"Wrote {len(kept)} items ({keep}) to {out_path}")


def _teach_seeds(settings, seeds_text: str, resume: bool, as_json: bool) -> None:  # noqa: ANN001
    from magister.teach import Teach
    from magister.teach.seeds import run_seeds

    try:
        seeds = [int(x) for x in seeds_text.split(",") if x.strip()]
    except ValueError:
        raise _fail(f"--train-seeds takes comma-separated integers, not '{seeds_text}'") from None
    try:
        analysis = run_seeds(settings, seeds, resume=resume,
                             make=lambda one, again: Teach(one, resume=again, progress=not as_json))
    except KeyboardInterrupt:
        err.print(f"\nInterrupted: finished stages are saved. Continue with the same command and --resume.")
        raise typer.Exit(130) from None
    if as_json:
        _print_json(analysis)
        return
    table = Table(title=f"teach over training seeds {seeds_text} ({analysis['items']} exam items)")
    for column in ("", "mean accuracy", "95% CI (seeds x items)", "per seed"):
        table.add_column(column)
    for key, label in (("round0", "round 0 (seed only)"), ("final", "last round")):
        r = analysis[key]
        table.add_row(label, f"{r['mean']:.1%}", f"{r['ci_low']:.1%} - {r['ci_high']:.1%}",
                      ", ".join(f"{x:.1%}" for x in r["per_seed"]))
    d = analysis["final_vs_round0"]
    table.add_row("change", f"{d['mean']:+.1%}", f"{d['ci_low']:+.1%} - {d['ci_high']:+.1%}",
                  f"p = {d['p_value']:.3g}" + ("" if d["training_variance"] else " (one seed: items only)"))
    out.print(table)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """The model backends, how to name a model with each, and what each supports."""
    from magister.models.base import BACKENDS, backend_class

    rows = []
    for backend in BACKENDS.values():
        cls = backend_class(backend.name)
        rows.append({"backend": backend.name, "example": backend.example, "choices": cls.supports_choices,
                     "logprobs": cls.supports_logprobs, "about": backend.summary})
    if as_json:
        _print_json(rows)
        return
    table = Table("backend", "example spec", "choice scoring", "token logprobs", "about")
    for r in rows:
        table.add_row(r["backend"], r["example"], "yes" if r["choices"] else "no", "yes" if r["logprobs"] else "no",
                      r["about"])
    out.print(table)
    out.print("mock scores choices in modes first, last and random.")


@app.command()
@_guard
def view(port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
         host: Annotated[str, typer.Option(help="Address to bind. Anything but 127.0.0.1/localhost needs the token "
                                           "printed at start on every request.")] = "127.0.0.1",
         who: Annotated[str, typer.Option(help="Name stored with the labels you give.")] = os.environ.get(
             "USER", "me") or "me",
         battles: Annotated[Optional[list[Path]], typer.Option(
             help="Battles JSONL to show as a Bradley-Terry leaderboard (repeatable).")] = None) -> None:
    """A local web app over the store: runs, items, comparisons, leaderboards, teaching runs, human labels."""
    try:
        from magister.web.app import serve
    except ImportError:
        raise _fail("magister view needs FastAPI and uvicorn: pip install 'magister[web]'") from None
    files = {}
    for path in battles or []:
        if not path.is_file():
            raise _fail(f"{path}: no such battles file")
        files[path.stem] = path
    serve(host=host, port=port, who=who, battles=files, echo=out.print)


if __name__ == "__main__":
    app()
