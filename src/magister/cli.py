"""The `magister` command line: each command parses its options and calls the library."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from magister.errors import MagisterError
from magister.types import Kind

app = typer.Typer(help="Teach small language models from big ones, and prove the result with exams.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model spec BACKEND:NAME (see `magister models`).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _sit_and_report(exam, model_spec: str, grader: str, use_choices: bool, as_json: bool) -> None:  # noqa: ANN001
    from magister.graders import get_grader
    from magister.models.base import load_model
    from magister.sit import sit
    from magister.store import Store

    get_grader(grader)  # every check before the store opens: a bad option writes nothing
    model = load_model(model_spec)
    store = Store()
    try:
        summary = sit(exam, model, store, grader=grader, use_choices=use_choices, progress=not as_json)
    except KeyboardInterrupt:
        err.print("\nInterrupted: finished items are saved. Run the same command again to resume.")
        raise typer.Exit(130) from None
    finally:
        model.close()
        store.close()
    if as_json:
        print(json.dumps(summary.to_dict()))
        return
    table = Table(title=f"Run {summary.run_id}", show_header=False)
    table.add_row("exam", f"{summary.exam} ({summary.n} items)")
    table.add_row("model", summary.model)
    table.add_row("accuracy", f"[bold]{summary.accuracy:.1%}[/]  95% CI {summary.ci_low:.1%} - {summary.ci_high:.1%}"
                  f"  ({summary.correct}/{summary.n})")
    table.add_row("parse failures", str(summary.parse_failures))
    table.add_row("model calls / cache hits", f"{summary.model_calls} / {summary.cache_hits}")
    table.add_row("tokens in / out", f"{summary.prompt_tokens} / {summary.completion_tokens}")
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    out.print(table)
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
    grader: Annotated[str, typer.Option(help="auto, exact, label, choice, numeric, regex or contains.")] = "auto",
    limit: Annotated[Optional[int], typer.Option(help="Sit only the first N items.")] = None,
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
    as_json: JsonOpt = False,
) -> None:
    """Make a model sit an exam; grade, store and score every answer."""
    from magister.exams.load import FieldMap, load_exam, pick_fewshot

    fields = FieldMap(input=input, reference=reference, id=id, choices=choices, kind=kind, split=split,
                      labels=tuple(x.strip() for x in labels.split(",")) if labels else None)
    loaded = load_exam(path, fields, name=name, limit=limit)
    if fewshot:
        loaded.fewshot = pick_fewshot(load_exam(fewshot, fields).items, shots)
    if instructions:
        loaded.instructions = instructions
    _sit_and_report(loaded, model, grader, not no_choices, as_json)


@app.command()
@_guard
def demo(model: ModelOpt = "llamacpp:smollm2", as_json: JsonOpt = False) -> None:
    """Sit the demo exam shipped with Magister (44 items: sentiment, trivia, sums), offline."""
    from magister.exams.load import load_exam

    data = resources.files("magister") / "data"
    with resources.as_file(data / "demo.jsonl") as items, resources.as_file(data / "demo_fewshot.jsonl") as shots:
        loaded = load_exam(items, name="demo")
        loaded.fewshot = load_exam(shots).items
    _sit_and_report(loaded, model, "auto", True, as_json)


@app.command()
@_guard
def runs(exam: Annotated[Optional[str], typer.Option(help="Only runs of this exam.")] = None,
         limit: int = 50, as_json: JsonOpt = False) -> None:
    """List stored runs, newest first."""
    from magister.store import Store

    rows = Store().runs(exam=exam, limit=limit)
    if as_json:
        print(json.dumps([{"run_id": r.id, "created_at": r.created_at, "status": r.status, "exam": r.exam_name,
                           "exam_version": r.exam_version, "model": r.model, "grader": r.grader, "n": r.n_items,
                           **({k: r.summary[k] for k in ("accuracy", "ci_low", "ci_high")} if r.summary else {})}
                          for r in rows]))
        return
    table = Table("run", "when", "exam", "model", "grader", "items", "accuracy (95% CI)", "status")
    for r in rows:
        score = (f"{r.summary['accuracy']:.1%} ({r.summary['ci_low']:.1%}-{r.summary['ci_high']:.1%})"
                 if r.summary else "-")
        table.add_row(r.id, time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)), r.exam_name, r.model,
                      r.grader, str(r.n_items), score, r.status)
    out.print(table)


@app.command()
@_guard
def show(run_id: Annotated[str, typer.Argument(help="Run id (or its unique ending).")],
         as_json: JsonOpt = False) -> None:
    """Every item of a run: question, reference, answer, grade, and the exact request sent."""
    from magister.store import Store

    store = Store()
    try:
        run = store.run(run_id)
    except KeyError:
        raise _fail(f"no run '{run_id}' (see `magister runs`)") from None
    items = {i.id: i for i in store.exam(run.exam_version).items}
    rows = store.answers(run.id)
    if as_json:
        print(json.dumps({"run_id": run.id, "config": run.config, "summary": run.summary, "items": [
            {"item": items[a.item_id].model_dump(mode="json"), "request": store.request(a.request_key).model_dump(
                mode="json"), "answer": a.model_dump(), "grade": g.model_dump()} for a, g in rows]}))
        return
    table = Table("item", "input", "reference", "answer", "read as", "ok", title=f"Run {run.id} · {run.model}")
    for a, g in rows:
        item = items[a.item_id]
        table.add_row(a.item_id, item.input[:60], item.reference, a.text[:40].replace("\n", " "),
                      g.extracted or "[red]unparsed[/]", "[green]✓[/]" if g.correct else "[red]✗[/]")
    out.print(table)
    if run.summary:
        s = run.summary
        out.print(f"accuracy {s['accuracy']:.1%} (95% CI {s['ci_low']:.1%}-{s['ci_high']:.1%}), n={s['n']}")


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
        print(json.dumps(rows))
        return
    table = Table("backend", "example spec", "choice scoring", "token logprobs", "about")
    for r in rows:
        table.add_row(r["backend"], r["example"], "yes" if r["choices"] else "no", "yes" if r["logprobs"] else "no",
                      r["about"])
    out.print(table)
    out.print("mock scores choices in modes first, last and random.")


if __name__ == "__main__":
    app()
