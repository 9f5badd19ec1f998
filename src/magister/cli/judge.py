"""Judges against people: judge-check, calibrate, labels, battles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from magister.cli.common import JsonOpt, closing, err, fail, guard, open_store, out, print_json


def check_judge(path: Path | None, run: str | None, grader: str, judge: str, *, human: list[str] | None = None,
                match_threshold: float | None = None, limit: int | None = None, baseline: str | None = None,
                calibrate: bool = False, calibration_out: Path | None = None, cascade: bool = False,
                guarded: bool = True, plot: Path | None = None, **fields: str) -> tuple[dict[str, Any], Path]:
    """Grade human-labelled rows (a JSONL file, or the labels stored for a run) with GRADER and report its
    agreement with the humans; with `calibrate`, save the fitted verdict rule. FIELDS name the columns
    (question, reference, response, instruction, response_a, response_b; each its own name by default).
    Returns the report and the labelled file it read."""
    from magister.graders.deterministic import GRADERS
    from magister.judges import Judge
    from magister.judges.check import Columns, check
    from magister.models.base import load_model
    from magister.store import Store

    if (path is None) == (run is None):
        raise fail("give exactly one of a labelled JSONL file or --run RUN_ID")
    if run is not None:  # the labels stored for a run, written where the calibration file goes too
        from magister.labels import labelled_rows, write_labels
        from magister.store import user_dir

        with open_store() as store:
            rows = labelled_rows(store, run)
        path = write_labels(rows, user_dir() / f"labels-{rows[0]['run_id']}.jsonl")
        human = ["human"]
    if grader not in ("match", "checklist", "rubric", "pairwise", *GRADERS):
        raise fail(f"unknown grader '{grader}'; choose match, checklist, rubric, pairwise or one of "
                   f"{', '.join(GRADERS)}")
    if baseline is not None and baseline not in GRADERS:
        raise fail(f"--baseline takes a deterministic grader ({', '.join(GRADERS)}), not '{baseline}'")
    columns = Columns(**fields, human=human or ["human"], match_threshold=match_threshold)
    if grader in GRADERS:
        report = check(path, grader, None, columns, limit=limit)
    else:
        model = load_model(judge)
        store = Store()
        with closing(model, store):
            report = check(path, grader, Judge(model, store, guarded=guarded, cascade=cascade), columns,
                           limit=limit, baseline=baseline, calibrate=calibrate)
    fitted = report.pop("_calibration", None)
    if fitted is not None:
        target = calibration_out or path.with_name(path.stem + ".calibration.json")
        fitted.source = str(path)
        fitted.save(target)
        report["calibration"]["file"] = str(target)
    if plot is not None and report.get("calibration_curve"):
        _reliability_plot(report["calibration_curve"], plot, f"{grader} · {judge}")
    return report, path


def print_check(report: dict[str, Any], path: Path, grader: str, judge: str) -> None:
    """The table of a `check_judge` report."""
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


@guard
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
    report, path = check_judge(path, run, grader, judge, human=human, match_threshold=match_threshold, limit=limit,
                               baseline=baseline, calibrate=calibrate, calibration_out=calibration_out,
                               cascade=cascade, guarded=not unguarded, plot=plot, question=question,
                               reference=reference, response=response, instruction=instruction,
                               response_a=response_a, response_b=response_b)
    if as_json:
        print_json(report)
        return
    print_check(report, path, grader, judge)


@guard
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
        raise fail(f"--grader: match or rubric can be calibrated, not '{grader}'")
    report, path = check_judge(path, run, grader, judge, human=human, match_threshold=match_threshold, limit=limit,
                               baseline="rules", calibrate=True, calibration_out=out_path)
    print_check(report, path, grader, judge)


@guard
def labels(run_id: Annotated[str, typer.Argument(help="Run id (or its unique start or ending).")],
           out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write a judge-check JSONL here.")]
           = None, as_json: JsonOpt = False) -> None:
    """The human labels given to a run's answers in `magister view`, with the run's own grades."""
    from magister.labels import labelled_rows, write_labels
    from magister.stats.agreement import kappa

    with open_store() as store:
        rows = labelled_rows(store, run_id)
    if out_path is not None:
        write_labels(rows, out_path)
    if as_json:
        print_json(rows)
        return
    graded = [r for r in rows if r["grader_correct"] is not None]
    agree = sum(r["human"] == r["grader_correct"] for r in graded)
    out.print(f"{len(rows)} labelled answers in run {rows[0]['run_id']}; the grader ({rows[0]['grader']}) agrees on "
              f"{agree} of {len(graded)}" + (f", kappa {kappa([r['grader_correct'] for r in graded], [r['human'] for r in graded]):.2f}"
                                              if len(graded) >= 2 else "") + "."
              + (f" Wrote {out_path}." if out_path else ""))


@guard
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
    with closing(model, store), progress_bar(err) as bar:
        task = bar.add_task(f"battles · {judge}", total=2 * len(rows), rate="both orders")
        verdicts = Judge(model, store, on_calls=lambda k: bar.advance(task, k)).pairwise(
            [(r["instruction"], r["response_a"], r["response_b"]) for r in rows])
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text("".join(json.dumps({"prompt_id": r["prompt_id"], "model_a": r["model_a"],
                                       "model_b": r["model_b"], "winner": v.winner, "debiased": v.debiased,
                                       "p_a": round(v.p_a, 4), "flipped": v.flipped}) + "\n"
                           for r, v in zip(rows, verdicts)))
    tmp.replace(out_path)
    flips = sum(v.flipped for v in verdicts)
    out.print(f"Wrote {len(verdicts)} battles to {out_path}: order flip rate {flips / len(verdicts):.1%} "
              f"(flips are ties). Rank with: magister leaderboard --battles {out_path}")

