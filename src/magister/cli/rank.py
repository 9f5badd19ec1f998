"""Across runs and models: compare, leaderboard, anchors, difficulty."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from magister.cli.common import JsonOpt, err, fail, guard, open_store, out, print_json


@guard
def compare(run_a: Annotated[str, typer.Argument(help="Run id (or its unique ending).")],
            run_b: Annotated[str, typer.Argument(help="Run id to compare with, on the same items.")],
            discordant: Annotated[int, typer.Option(min=0, help="How many of the items where they differ to "
                                                    "list.")] = 20,
            as_json: JsonOpt = False) -> None:
    """Paired comparison of two runs on the same items: McNemar's exact test, or a paired bootstrap for scores."""
    from magister.rankings import compare_runs
    from magister.web.data import compare_page

    with open_store() as store:
        result, a, b = compare_runs(store, run_a, run_b)
        if as_json:
            differ = compare_page(store, a.id, b.id, per_page=max(discordant, 1), discordant_only=True)["items"]
            print_json({"run_a": a.id, "run_b": b.id, "model_a": a.model, "model_b": b.model, **result.to_dict(),
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
        differ = compare_page(store, a.id, b.id, per_page=max(discordant, 1), discordant_only=True)
        if discordant and differ["items"]:
            items = Table("item", "input", "reference", "A's answer", "B's answer", title=f"Items where they differ "
                          f"({len(differ['items'])} of {differ['total']}; --discordant N for more)")
            for i in differ["items"]:
                mark = lambda side: "[green]✓[/] " if side["correct"] else "[red]✗[/] "  # noqa: E731
                items.add_row(i["item_id"], (i["input"] or "")[:70], (i["reference"] or "")[:30],
                              mark(i["a"]) + i["a"]["answer"][:40].replace("\n", " "),
                              mark(i["b"]) + i["b"]["answer"][:40].replace("\n", " "))
            out.print(items)


@guard
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
        raise fail("give exactly one of --exam NAME or --battles PATH")
    if battles is not None:
        from magister.stats.bradley_terry import leaderboard as bt_leaderboard
        from magister.stats.bradley_terry import load_battles

        if resample not in ("prompt", "game"):
            raise fail(f"--resample must be prompt or game, not {resample!r}")
        loaded = load_battles(battles)
        try:
            board = bt_leaderboard(loaded, rounds=rounds, resample=resample,  # type: ignore[arg-type]
                                   anchor=anchor, seed=seed)
        except ValueError as error:
            raise fail(str(error)) from None
        if as_json:
            print_json([r.to_dict() for r in board])
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

    with open_store() as store:
        standings = exam_leaderboard(store, exam)  # type: ignore[arg-type]
    if as_json:
        print_json([s.to_dict() for s in standings])
        return
    table = Table("rank", "model", "accuracy", "95% CI", "items", "run", title=f"Exam {exam}")
    for s in standings:
        table.add_row(str(s.rank), s.model, f"{s.score:.1%}", f"{s.ci_low:.1%} - {s.ci_high:.1%}", str(s.n), s.run_id)
    out.print(table)


@guard
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
        raise fail("give exactly one of a correctness CSV or --exam NAME")
    if not out_path.parent.is_dir():  # before the fit, not after it
        raise fail(f"--out {out_path}: the folder {out_path.parent} does not exist")
    if embedding not in ("correctness", "irt"):
        raise fail(f"--embedding must be correctness or irt, not {embedding!r}")
    if source is not None:
        matrix, items, names = read_matrix(source)
    else:
        from magister.rankings import correctness_matrix

        with open_store() as store:
            matrix, items, names = correctness_matrix(store, exam)  # type: ignore[arg-type]
    start = time.perf_counter()
    with out.status(f"Fitting IRT on {len(names)} models x {len(items)} items, {folds}-fold cross-validation"):
        try:
            fitted = fit_anchors(matrix, items, names, k=k, dims=dims, embedding=embedding,  # type: ignore[arg-type]
                                 folds=folds, seed=seed, exam=exam or source.stem)  # type: ignore[union-attr]
        except ValueError as error:
            raise fail(str(error)) from None
    fitted.save(out_path)
    report = {"out": str(out_path), "models": len(names), "items": len(items), "k": len(fitted.anchor_index),
              "lambda": fitted.lam, "fit_s": time.perf_counter() - start, **fitted.cv}
    if as_json:
        print_json(report)
        return
    out.print(f"Wrote {len(fitted.anchor_index)} anchors to {out_path} ({report['fit_s']:.0f} s). Cross-validated "
              f"over the {len(names)} models: mean abs. error of gp-IRT {fitted.cv['mae_gp_irt']:.3f}, anchor mean "
              f"{fitted.cv['mae_anchor']:.3f}, p-IRT {fitted.cv['mae_p_irt']:.3f}; lambda {fitted.lam:.2f}.")
    out.print(f"Estimate a model with: magister exam EXAM --anchors {out_path} --model SPEC")


@guard
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

    if keep not in ("all", "hard"):
        raise fail(f"--keep must be all or hard, not '{keep}'")
    with open_store() as store:
        rows, models = item_difficulty(store, exam)
        items = {i.id: i for i in store.exam(latest_runs(store, exam)[0].exam_version).items}
    kept = [r for r in rows if keep == "all" or r["share_correct"] <= hard_share]
    if out_path is not None:
        lines = []
        for r in kept:
            lines.append(json.dumps({**item_row(items[r["item_id"]]), "share_correct": r["share_correct"],
                                     "irt_difficulty": r["irt_difficulty"]}))
        out_path.write_text("".join(line + "\n" for line in lines))
    if as_json:
        print_json({"exam": exam, "models": models, "items": rows, "kept": len(kept)})
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

