"""The teacher at work: teach (the loop), write (a new exam)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table
from typer.core import TyperCommand

from magister.cli.common import JsonOpt, closing, err, fail, guard, interruptible, out, print_json

if TYPE_CHECKING:
    from click import Context, HelpFormatter


def _opt(help: str, *names: str):  # noqa: A002, ANN202
    return typer.Option(*names, help=help)


def config_fields(section: type | None = None, prefix: str = "") -> list[str]:
    """Every field of the teach config, dotted inside its sections: seed, ..., fields.input, train.lora_alpha."""
    from pydantic import BaseModel

    from magister.teach.config import TeachConfig

    names: list[str] = []
    for name, field in (section or TeachConfig).model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names += config_fields(field.annotation, f"{prefix}{name}.")
        else:
            names.append(prefix + name)
    return names


class TeachCommand(TyperCommand):
    """`teach --help` ends with every config field, read from TeachConfig when the help is shown (so that
    importing the command line does not import the config)."""

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        self.epilog = ("Every config field, a key of the YAML file or --set FIELD=VALUE (dotted inside a "
                       "section): " + ", ".join(config_fields()) + ".")
        super().format_help(ctx, formatter)


@guard
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
    verify: Annotated[str, typer.Option(help="off, teacher, majority or neighbours (the nearest labelled examples "
                                              "vote; no model call).")] = "teacher",
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

    if verify not in ("off", "teacher", "majority", "neighbours"):
        raise fail(f"--verify must be off, teacher, majority or neighbours, not '{verify}'")
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
    with closing(teacher_model, verifier_model, store), \
            interruptible("every finished teacher call is cached. Run the same command again to resume."):
        if missed:
            try:
                run = store.run(missed)
            except KeyError:
                raise fail(f"no run '{missed}' in the store (see `magister runs`)") from None
            references = {i.id: i.reference for i in store.exam(run.exam_version).items}
            misses = [references[a.item_id] for a, g in store.answers(run.id) if g.correct is False]
            weights = {lab: 1.0 + misses.count(lab) for lab in label_set}
        written = write_exam(examples, teacher_model, store, n=count, labels=label_set or None, weights=weights,
                             per_call=per_call, exclude=excluded, verify_mode=verify, verifier=verifier_model,
                             samples=samples, temperature=temperature, seed=seed, progress=not as_json)
    rows = [item_row(i) for i in written.items]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, "".join(json.dumps(r) + "\n" for r in rows))
    rejected_path = out_path.with_name(out_path.stem + ".rejected.json")
    write_json(rejected_path, written.rejected())
    summary = {**written.summary(), "out": str(out_path), "rejected_file": str(rejected_path), "weights": weights}
    if as_json:
        print_json(summary)
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



@guard
def teach(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config. Every field (all are listed at the end) "
                                                          "can be set with --set FIELD=VALUE; the common ones "
                                                          "also have a flag below.")] = None,
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
    fold_epochs: Annotated[Optional[float], _opt("Training epochs of the fold students (default 3).")]
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
    verify: Annotated[Optional[str], _opt("off, teacher, majority or neighbours (the nearest labelled seed "
                                          "examples vote; no model call).")] = None,
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
dev score (--select dev), never by the exam; 1 round of 4 examples per error (--rounds 1 --per-item 4), 4 fold \
students of 3 epochs, and the student trained with LoRA r 16, 5 epochs, learning rate 1e-3. The README's \
Benchmarks section gives what this arm measured against seed-only training, LLM2LLM and untargeted teacher data.
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
    with interruptible(f"finished stages are saved. Continue with: magister teach ... --out {settings.out} "
                       "--resume"):
        run.run()
    report = run.report()
    paths = web_report.write(report, settings.out)
    if as_json:
        print_json(report)
        return
    out.print(teach_report.table(report), width=max(out.width, 120))
    out.print(f"Report: {paths['html']} · learning curve: {paths['png']} · JSON: {paths['json']}")


def _teach_seeds(settings, seeds_text: str, resume: bool, as_json: bool) -> None:  # noqa: ANN001
    from magister.teach import Teach
    from magister.teach.seeds import run_seeds

    try:
        seeds = [int(x) for x in seeds_text.split(",") if x.strip()]
    except ValueError:
        raise fail(f"--train-seeds takes comma-separated integers, not '{seeds_text}'") from None
    with interruptible("finished stages are saved. Continue with the same command and --resume."):
        analysis = run_seeds(settings, seeds, resume=resume,
                             make=lambda one, again: Teach(one, resume=again, progress=not as_json))
    if as_json:
        print_json(analysis)
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

