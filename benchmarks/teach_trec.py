"""Benchmark: does teaching work? SmolLM2-135M-Instruct learns TREC (or SST-2) from 100 labelled examples.

On ../shared/data/trec/ (`--task sst2`: ../shared/data/sst2/): a class-balanced seed of 100 examples
drawn with random.Random(0) from train.jsonl, and the test set (TREC's 500 items; SST-2's first 500
with --exam-limit) as the held-out exam (constrained choice over the labels). The teacher is
Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, fetched and verified by benchmarks/offline_teacher.py; --teacher
overrides). Arms, with the same training seeds:

  (a) zero_shot        the untrained student
  (b) seed_only        LoRA fine-tuned on the seed alone (round 0 of every teaching arm)
  (c) llm2llm          vanilla LLM2LLM: the student sits its seed items in-sample, `similar` on the
                       missed ones, wrong answer hidden, no dedupe, no verification, the last round kept
  (d) magister         the default: out-of-fold mining (k fold students, each trained without one fold
                       of the seed, sit that fold: errors against human labels), `contrast` (inputs of the
                       human label a reader could mistake for the student's answer), contamination and
                       ROUGE-L dedupe, a verifier that must beat the out-of-fold student or only vetoes,
                       the round chosen by the dev score (out-of-fold accuracy), never by the exam
  (e) untargeted       as many teacher-written examples as (d) kept for that seed, balanced over the
                       labels, written and verified the same way (same gate), not conditioned on errors
                       (both controls also get (d)'s dev score: k fold students on the seed minus a
                       fold plus all the written rows, sitting that fold; --no-control-dev skips it)
  (e') untargeted_tokens (--arms) the same, but asked for as many items as spend about (d)'s teacher tokens
                       (the count scaled by (d)'s tokens over (e)'s), so the two controls bound (d) by count
                       and by cost
  ablations (--arms):  ablate_probe   (d) with probe mining instead of folds
                       ablate_similar (d) with `similar` instead of `contrast`
                       ablate_gate    (d) with the old gate (the verifier need only beat the most
                                      common label)
  variants (--arms):   pairs          (d) with `pairs`: contrast from both sides of each confused pair,
                                      so the additions stay balanced over the two labels
                       small_steps    (d) in small steps: 3 rounds of 2 examples per error (each round
                                      mines the last one's fold students and retrains from the base
                                      model; the round chosen by the dev score)
  (f) teacher_fewshot  the teacher itself with 12 worked examples from the seed
  (g) full_data        the student fine-tuned on all labelled training items (one seed, --full-epochs)

`chosen_on_dev` in the results names the arm with the best mean dev score (out of fold on the
human seed rows, at the round each arm reports): the configuration to make the default, chosen
without the exam.

Training noise is as large as the effects: every trained arm runs with --seeds training seeds, its
accuracy is the mean over them, and intervals and paired tests come from the two-way (training seed
x item) analysis of magister.stats.runs. Every teacher call goes through one response cache (the
work dir's bench.db) and every stage writes its result to the work dir, so a rerun with the same
--work repeats nothing that finished.

    python benchmarks/teach_trec.py --work /tmp/tt                      # TREC, the main arms
    python benchmarks/teach_trec.py --task sst2 --exam-limit 500 --work /tmp/ts
    python benchmarks/teach_trec.py --quick --work /tmp/tq              # 1 seed, 100 test items
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from offline_teacher import teacher_path  # noqa: E402

from magister.exams.load import load_exam, pick_fewshot  # noqa: E402
from magister.synth.write import write_exam  # noqa: E402
from magister.models.base import load_model  # noqa: E402
from magister.sit import sit  # noqa: E402
from magister.stats import wilson  # noqa: E402
from magister.stats.paired import compare  # noqa: E402
from magister.stats.runs import compare_trainings, runs_interval  # noqa: E402
from magister.store import Store  # noqa: E402
from magister.teach import Teach, TeachConfig, TrainConfig  # noqa: E402
from magister.teach.loop import choose_round  # noqa: E402
from magister.teach.rundir import RunDir  # noqa: E402
from magister.teach.seeds import grid  # noqa: E402

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared" / "data"
DATA = SHARED / "trec"
TRAINED = ("seed_only", "llm2llm", "magister", "untargeted", "untargeted_tokens", "ablate_probe", "ablate_similar",
           "ablate_gate", "pairs", "small_steps")
MAIN_ARMS = ("zero_shot", "seed_only", "llm2llm", "magister", "untargeted", "teacher_fewshot")
# Arms that change one setting of (d) and re-use its round-0 fold students: three ablations, and two variants.
ABLATIONS = {"pairs": {"strategies": ["pairs"]}, "small_steps": {"rounds": 3, "per_item": 2},
             "ablate_probe": {"mine": "probe"}, "ablate_similar": {"strategies": ["similar"]},
             "ablate_gate": {"verify_gate": "majority"}}


def balanced_seed(n: int, seed: int) -> list[dict]:
    """n examples from TREC train, as even over the 6 labels as the data allows, reproducibly."""
    rows = [json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines()]
    random.Random(seed).shuffle(rows)
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    chosen: list[dict] = []
    while len(chosen) < n:
        for group in by_label.values():
            if group and len(chosen) < n:
                chosen.append(group.pop())
    return [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in chosen]


def teach_arm(config: TeachConfig, store: Store, round0_from: Path | None = None) -> Path:
    """Run (or finish) one teaching run; round 0 and the untrained baseline copied from `round0_from`."""
    out, source = RunDir(config.out), RunDir(round0_from) if round0_from is not None else None
    if source is not None and not out.state.exists():
        out.path.mkdir(parents=True, exist_ok=True)
        shutil.copy(source.baseline, out.baseline)
        shutil.copy(source.baseline_grades, out.baseline_grades)
        if config.seed == _config_seed(source.path) and not out.round(0).path.exists():
            shutil.copytree(source.round(0).path, out.round(0).path, dirs_exist_ok=True)
            saved = json.loads(out.round(0).record.read_text())
            saved["done"] = [stage for stage in saved["done"] if stage != "dev"]  # this arm's own dev stage
            out.round(0).record.write_text(json.dumps(saved, indent=2))
    if not _finished(out.path):
        print(f"== {out.path}", flush=True)
        Teach(config, resume=out.state.exists(), store=store).run()
    return out.path


def _config_seed(out: Path) -> Path | None:
    state = RunDir(out).state
    return Path(json.loads(state.read_text())["config"]["seed"]) if state.exists() else None


def _finished(out: Path) -> bool:
    state = RunDir(out).state
    return state.exists() and json.loads(state.read_text()).get("stopped") is not None


def rounds_of(out: Path) -> list[dict]:
    return [json.loads(r.record.read_text()) for r in RunDir(out).rounds() if r.record.exists()]


def final_round(out: Path) -> dict:
    """The round the run chose (by its dev score, or the last one with `select: last`)."""
    rounds = rounds_of(out)
    state = json.loads(RunDir(out).state.read_text())
    number = choose_round(rounds, state["config"].get("select", "last"))
    return next(r for r in rounds if r["round"] == number)


def grades(out: Path, number: int | None = None) -> dict[str, bool]:
    number = final_round(out)["round"] if number is None else number
    return json.loads(RunDir(out).round(number).grades.read_text())


def record(seed: int, out: Path, number: int | None = None) -> dict:
    rounds = rounds_of(out)
    final = rounds[number] if number is not None else final_round(out)
    later = rounds[1:] if number is None else []
    own_dev = rounds[0]["wall_s"].get("dev", 0.0) if later else 0.0  # round 0's fold students are this arm's cost
    return {"seed": seed, "accuracy": final["exam"]["accuracy"], "ci_low": final["exam"]["ci_low"],
            "ci_high": final["exam"]["ci_high"], "data": final["data"], "round": final["round"],
            "dev": {r["round"]: r["dev"]["accuracy"] for r in rounds if r.get("dev")},
            "mined": [r["mined"] for r in later], "kept": [r["kept"] for r in later],
            "rejections": [r["rejections"] for r in later], "verifier": [r.get("verifier") for r in later],
            "contamination": [{k: v for k, v in (r.get("contamination") or {}).items() if k != "rejected_sample"}
                              for r in later],
            "folds": {r["round"]: {k: r["folds"][k] for k in ("accuracy", "errors", "n")} for r in rounds
                      if r.get("folds")},
            "teacher_tokens": sum(r["teacher_tokens"] for r in later),
            "teacher_calls": sum(r["teacher_calls"] for r in later),
            "wall_s": sum(sum(r["wall_s"].values()) for r in (later or [final])) + own_dev,
            "stage_s": {k: round(sum(r["wall_s"].get(k, 0.0) for r in (later or [final])) + (own_dev if k == "dev" else 0))
                        for k in ("mine", "write", "filter", "train", "dev", "exam")},
            "last_loss": final.get("train", {}).get("last_loss")}


def untargeted(seed_rows: list[dict], n: int, teacher: object, store: Store, exclude: list, work: Path,
               base: TeachConfig, bar: float | None, tag: str) -> tuple[Path, dict]:
    """The control's training file: the seed plus n balanced teacher-written items (cached per seed and n).

    Written with `magister write` (label-conditioned, the same filters), verified by the same teacher
    under the same gate as (d) (`bar`: that seed's out-of-fold student), without looking at errors."""
    path = work / f"untargeted-{tag}-{n}.jsonl"
    info_path = work / f"untargeted-{tag}-{n}.json"
    if not path.exists():
        seed_exam = load_exam(work / "seed.jsonl", name=f"{work.name}-seed")
        started = time.perf_counter()
        written = write_exam(seed_exam, teacher, store, n=n, per_call=base.probe_per_call, avoid=seed_exam.items,
                             exclude=exclude, verify_mode=base.verify, verify_shots=base.verify_shots,
                             dedupe_method=base.dedupe, threshold=base.dedupe_threshold,
                             temperature=base.temperature, seed=1, prefix="u", verify_bar=bar)
        rows = seed_rows + [{"id": i.id, "text": i.input, "label": i.reference, "strategy": "untargeted"}
                            for i in written.items]  # a `strategy`: never held out of a fold student's training
        info = {**written.summary(), "wall_s": time.perf_counter() - started}
        info_path.write_text(json.dumps(info, indent=2))
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, json.loads(info_path.read_text())


def main() -> None:
    global DATA
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="trec", choices=["trec", "sst2"])
    parser.add_argument("--teacher", default=None, help="teacher spec (default: the offline Qwen2.5-Coder-1.5B)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per arm (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed-size", type=int, default=100)
    parser.add_argument("--per-item", type=int, default=4, help="new examples per mined error")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--fold-epochs", type=float, default=3.0, help="training epochs of the fold students")
    parser.add_argument("--probe-size", type=int, default=80, help="(ablate_probe) items of the probe exam")
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--full-epochs", type=float, default=1.0)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--exam-limit", type=int, default=None, help="first N test items (default all)")
    parser.add_argument("--full-limit", type=int, default=None, help="first N training items for (g)")
    parser.add_argument("--arms", default="main", help="'main' (%s), 'all' (adds the ablations and full_data), "
                        "or a comma-separated list" % ", ".join(MAIN_ARMS))
    parser.add_argument("--no-control-dev", dest="control_dev", action="store_false",
                        help="skip the untargeted controls' out-of-fold dev score (4 fold students each)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 100 test items, (g) on 1000")
    parser.add_argument("--work", default=None, help="working directory (default: a fresh temporary one)")
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/teach_TASK.json)")
    args = parser.parse_args()
    DATA = SHARED / args.task
    if args.quick:
        args.seeds, args.exam_limit, args.probe_size, args.full_limit = 1, args.exam_limit or 100, 30, 1000
    name = f"teach_{args.task}" + ("_quick" if args.quick else "")
    out_path = Path(args.out or ROOT / "results" / f"{name}.json")
    wanted = set(MAIN_ARMS) if args.arms == "main" else \
        set(TRAINED + ("zero_shot", "teacher_fewshot", "full_data")) if args.arms == "all" else set(args.arms.split(","))

    started = time.perf_counter()
    import tempfile

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix=f"teach_{args.task}-"))
    work.mkdir(parents=True, exist_ok=True)
    teacher_spec = args.teacher or f"llamacpp:{teacher_path()}"
    seed_rows = balanced_seed(args.seed_size, 0)
    (work / "seed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in seed_rows))
    store = Store(work / "bench.db")  # one response cache for every arm and seed
    exam = load_exam(DATA / "test.jsonl", limit=args.exam_limit)
    teacher = load_model(teacher_spec)
    result: dict = {}
    runs: dict[str, list[dict]] = {name: [] for name in TRAINED}
    graded: dict[str, list[dict[str, bool]]] = {name: [] for name in TRAINED}
    extra: dict[str, list] = {"untargeted_write": []}
    try:
        for seed in range(args.seeds):
            train = TrainConfig(epochs=args.epochs, lora_r=args.lora_r, lora_alpha=2 * args.lora_r,
                                learning_rate=args.learning_rate, max_length=args.max_length, batch_size=8, seed=seed)
            base = TeachConfig(seed=work / "seed.jsonl", exam=DATA / "test.jsonl", teacher=teacher_spec,
                               student="smollm2", rounds=args.rounds, per_item=args.per_item,
                               exam_limit=args.exam_limit, train=train, probe_size=args.probe_size,
                               folds=args.folds, fold_epochs=args.fold_epochs)
            here = work / f"seed-{seed}"
            first = here / "seed_only"
            if seed > 0 and not RunDir(first).baseline.exists():  # the untrained student sits the exam once
                first.mkdir(parents=True, exist_ok=True)
                zero, here_first = RunDir(work / "seed-0" / "seed_only"), RunDir(first)
                shutil.copy(zero.baseline, here_first.baseline)
                shutil.copy(zero.baseline_grades, here_first.baseline_grades)
            teach_arm(base.model_copy(update={"out": first, "rounds": 0}), store)
            runs["seed_only"].append(record(seed, first, 0))
            graded["seed_only"].append(grades(first, 0))
            # (d): the defaults of TeachConfig, i.e. `magister teach`; the controls are sized by what it wrote
            if wanted & {"magister", "untargeted", "untargeted_tokens"}:
                out = teach_arm(base.model_copy(update={"out": here / "magister"}), store, first)
                runs["magister"].append(record(seed, out))
                graded["magister"].append(grades(out))
            if wanted & {"untargeted", "untargeted_tokens"}:
                kept = rounds_of(here / "magister")[-1]["data"] - len(seed_rows)  # what (d) wrote, chosen or not
                bar = json.loads(RunDir(here / "magister").round(0).folds.read_text())["accuracy"]
                path, info = untargeted(seed_rows, kept, teacher, store, exam.items, work, base, bar, f"s{seed}")
                extra["untargeted_write"].append({"n": kept, "bar": bar, **info})
                controls = [("untargeted", path, info)]
                if "untargeted_tokens" in wanted:  # as many items as cost about (d)'s teacher tokens
                    spent = runs["magister"][-1]["teacher_tokens"]
                    n = max(1, round(kept * spent / max(info["tokens"], 1)))
                    more, more_info = untargeted(seed_rows, n, teacher, store, exam.items, work, base, bar,
                                                 f"s{seed}")
                    extra.setdefault("untargeted_tokens_write", []).append(
                        {"n": n, "bar": bar, "magister_tokens": spent, **more_info})
                    controls.append(("untargeted_tokens", more, more_info))
                for arm, data, written in controls:
                    if arm not in wanted:
                        continue
                    out = teach_arm(base.model_copy(update={"out": here / arm, "rounds": 0, "seed": data}),
                                    store, first)
                    runs[arm].append({**record(seed, out, 0), "teacher_tokens": written["tokens"],
                                      "teacher_calls": written["calls"]})
                    if args.control_dev:  # the dev score a teaching run has: out of fold on the human seed rows
                        dev = control_dev(base.model_copy(update={"out": here / arm, "rounds": 0, "seed": data}),
                                          store)
                        runs[arm][-1]["dev"] = {0: dev["accuracy"]}
                        runs[arm][-1]["stage_s"]["dev"] = round(dev["wall_s"])
                        runs[arm][-1]["wall_s"] += dev["wall_s"]
                    graded[arm].append(grades(out, 0))
            if "llm2llm" in wanted:
                out = teach_arm(base.model_copy(update={
                    "out": here / "llm2llm", "mine": "seed", "strategies": ["similar"], "show_wrong_answer": False,
                    "dedupe": "off", "verify": "off", "select": "last"}), store, first)
                runs["llm2llm"].append(record(seed, out))
                graded["llm2llm"].append(grades(out))
            for arm, change in ABLATIONS.items():
                if arm in wanted:
                    source = here / "magister" if RunDir(here / "magister").round(0).folds.exists() else first
                    out = teach_arm(base.model_copy(update={"out": here / arm, **change}), store, source)
                    runs[arm].append(record(seed, out))
                    graded[arm].append(grades(out))
        zero = json.loads(RunDir(work / "seed-0" / "seed_only").baseline.read_text())
        result["zero_shot"] = {"accuracy": zero["accuracy"],
                               **dict(zip(("ci_low", "ci_high"), wilson(zero["correct"], zero["n"]))),
                               "n": zero["n"], "teacher_tokens": 0, "wall_s": zero.get("wall_s", 0.0)}
        if "teacher_fewshot" in wanted:
            result["teacher_fewshot"] = teacher_fewshot(exam, load_exam(work / "seed.jsonl").items, teacher, store)
    finally:
        teacher.close()
    if "full_data" in wanted:
        result["full_data"] = full_data(work, store, args, seed_rows)

    arms = [name for name in TRAINED if graded[name]]
    items = sorted(set.intersection(*(set(g) for name in arms for g in graded[name])))
    label_of = {i.id: i.reference for i in exam.items}
    for name in arms:
        estimate = runs_interval(grid(graded[name], items))
        by_label = {label: sum(g[i] for g in graded[name] for i in items if label_of[i] == label) /
                    (len(graded[name]) * sum(label_of[i] == label for i in items))
                    for label in sorted({label_of[i] for i in items})}
        result[name] = {"accuracy": estimate.mean, "ci_low": estimate.ci_low, "ci_high": estimate.ci_high,
                        "n": len(items), "seed_sd": estimate.seed_sd, "by_label": by_label,
                        "teacher_tokens": round(sum(r["teacher_tokens"] for r in runs[name]) / len(runs[name])),
                        "wall_s": sum(r["wall_s"] for r in runs[name]) / len(runs[name]), "runs": runs[name]}
    pairs = {"magister_vs_seed_only": ("magister", "seed_only"), "magister_vs_llm2llm": ("magister", "llm2llm"),
             "magister_vs_untargeted": ("magister", "untargeted"), "llm2llm_vs_seed_only": ("llm2llm", "seed_only"),
             "untargeted_vs_seed_only": ("untargeted", "seed_only"),
             "magister_vs_untargeted_tokens": ("magister", "untargeted_tokens"),
             **{f"magister_vs_{arm}": ("magister", arm) for arm in ABLATIONS}}
    detail = {key: {**compare_trainings(grid(graded[a], items), grid(graded[b], items)).to_dict(),
                    "per_seed_mcnemar": [paired(x, y) for x, y in zip(graded[a], graded[b])]}
              for key, (a, b) in pairs.items() if graded[a] and graded[b]}
    result["paired"] = {**{key: d["p_value"] for key, d in detail.items()}, "detail": detail,
                        "test": "two-way (training seed x item) t test on the paired differences, Satterthwaite df; "
                                "per_seed_mcnemar holds each seed's models fixed"}
    result["chosen_on_dev"] = chosen_on_dev(runs)
    if "full_data" in result and "magister" in result:
        gap = result["full_data"]["accuracy"] - result["seed_only"]["accuracy"]
        result["gap_closed"] = (result["magister"]["accuracy"] - result["seed_only"]["accuracy"]) / gap if gap else None
    result["untargeted_write"] = extra["untargeted_write"]
    result["untargeted_tokens_write"] = extra.get("untargeted_tokens_write", [])
    stage_s = sum(r["wall_s"] for name in arms for r in runs[name]) + result["zero_shot"]["wall_s"] + \
        sum(result.get(k, {}).get("wall_s", 0.0) for k in ("teacher_fewshot", "full_data")) + \
        sum(w.get("wall_s", 0.0) for key in ("untargeted_write", "untargeted_tokens_write")
            for w in extra.get(key, []))
    result["settings"] = {
        "seeds": list(range(args.seeds)), "seed_size": args.seed_size, "seed_draw": "class-balanced, random.Random(0)",
        "exam_items": len(items), "student": "SmolLM2-135M-Instruct (embedded GGUF, de-quantised to float32)",
        "teacher": teacher_spec, "rounds": args.rounds, "per_item": args.per_item, "probe_size": args.probe_size,
        "task": args.task, "folds": args.folds, "fold_epochs": args.fold_epochs,
        "magister": "TeachConfig defaults: mine folds, strategies [contrast], verify teacher, verify_gate student, "
                    "select dev", "pairs": "magister with strategies [pairs]", "method": "lora", "lora_r": args.lora_r,
        "lora_alpha": 2 * args.lora_r, "target_modules": "all-linear", "epochs": args.epochs,
        "full_data_epochs": args.full_epochs, "learning_rate": args.learning_rate, "batch_size": 8,
        "max_length": args.max_length, "scoring": "constrained choice over the labels",
        "retrain": "from the base model each round", "verify_shots": 12, "dedupe_threshold": 0.7,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU" if not _cuda() else "GPU",
        "process_wall_s": time.perf_counter() - started, "work_dir": str(work),
        # every stage's measured time, summed: the cost of the benchmark even when a rerun resumed it
        "total_wall_s": stage_s,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2))
    print_table(result)


def teacher_fewshot(exam, seed_items: list, teacher, store: Store) -> dict:  # noqa: ANN001
    """(f): the teacher sits the exam with 12 worked examples from the seed."""
    shown = exam.model_copy(update={"fewshot": pick_fewshot(seed_items, 12), "name": f"{exam.name}-teacher-12shot"})
    earlier = [r.summary for r in store.runs(exam=shown.name) if r.summary and r.summary.get("model_calls")]
    summary = sit(shown, teacher, store)
    references = {i.id: i.reference for i in exam.items}
    confusion: dict[str, dict[str, int]] = {}
    for answer, _ in store.answers(summary.run_id):  # where the teacher's idea of a label differs from TREC's
        row = confusion.setdefault(references[answer.item_id], {})
        row[answer.text] = row.get(answer.text, 0) + 1
    recall = {label: row.get(label, 0) / sum(row.values()) for label, row in sorted(confusion.items())}
    return {"accuracy": summary.accuracy, "ci_low": summary.ci_low, "ci_high": summary.ci_high, "n": summary.n,
            "run_id": summary.run_id,  # the first, uncached sitting's time (a rerun is served from the cache)
            "wall_s": earlier[-1]["wall_s"] if earlier else summary.wall_s,
            "prompt_tokens": summary.prompt_tokens, "recall_by_label": recall, "confusion": confusion}


def full_data(work: Path, store: Store, args: argparse.Namespace, seed_rows: list[dict]) -> dict:
    """(g): the student fine-tuned on every labelled TREC training item (one training seed)."""
    rows = [json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines()]
    rows = rows[: args.full_limit] if args.full_limit else rows
    path = work / f"full-{len(rows)}.jsonl"
    if not path.exists():
        path.write_text("".join(json.dumps({"id": r["id"], "text": r["text"], "label": r["label"]}) + "\n"
                                for r in rows))
    train = TrainConfig(epochs=args.full_epochs, lora_r=args.lora_r, lora_alpha=2 * args.lora_r,
                        learning_rate=args.learning_rate, max_length=args.max_length, batch_size=8, seed=0)
    config = TeachConfig(seed=path, exam=DATA / "test.jsonl", student="smollm2", rounds=0,
                         exam_limit=args.exam_limit, train=train, out=work / "full_data")
    out = teach_arm(config, store, work / "seed-0" / "seed_only")
    r = record(0, out, 0)
    return {**r, "n": rounds_of(out)[0]["exam"]["n"], "train_items": len(rows), "epochs": args.full_epochs}


def control_dev(config: TeachConfig, store: Store) -> dict:
    """A finished control's out-of-fold dev score and the time its fold students took, measured once (a rerun
    reads both back, so the benchmark's stage time still counts them)."""
    path = config.out / "control_dev.json"
    if not path.exists():
        started = time.perf_counter()
        folds = Teach(config, resume=True, store=store).out_of_fold(0)
        path.write_text(json.dumps({"accuracy": folds["accuracy"], "wall_s": time.perf_counter() - started}))
    return json.loads(path.read_text())


def chosen_on_dev(runs: dict[str, list[dict]]) -> dict:
    """Every arm's mean dev score (out of fold on the human seed rows) of the round it reports, and the best:
    the configuration the benchmark would make the default without looking at the exam. seed_only's dev score
    is the teaching runs' round 0 (the same data and fold students)."""
    dev: dict[str, list[float]] = {}
    for name, done in runs.items():
        scores = [r["dev"].get(r["round"], r["dev"].get(str(r["round"]))) for r in done]
        if done and all(score is not None for score in scores):
            dev[name] = scores
    zero = [r["dev"].get(0, r["dev"].get("0")) for r in runs.get("magister", [])]
    if zero and all(score is not None for score in zero) and len(zero) == len(runs.get("seed_only", [])):
        dev["seed_only"] = zero
    means = {name: sum(scores) / len(scores) for name, scores in dev.items()}
    return {"mean_dev": means, "per_seed": dev, "best": max(means, key=means.__getitem__) if means else None,
            "note": "arms with a dev score on every seed; the exam plays no part in this choice. An arm that "
                    "chose its round by the dev score reports the best of its rounds: optimistic by that choice"}


def paired(a: dict[str, bool], b: dict[str, bool]) -> dict:
    shared = sorted(set(a) & set(b))
    return compare([a[i] for i in shared], [b[i] for i in shared], binary=True).to_dict()


def print_table(result: dict) -> None:
    print(f"{'arm':<16} {'accuracy':>9} {'95% CI':>13} {'runs':>24} {'teacher tok':>12}")
    for name in ("zero_shot", "seed_only", "llm2llm", "magister", "untargeted", "untargeted_tokens",
                 "teacher_fewshot", "full_data", *ABLATIONS):
        if name not in result:
            continue
        r = result[name]
        each = " ".join(f"{x['accuracy']:.1%}" for x in r.get("runs", []))
        print(f"{name:<16} {r['accuracy']:>9.1%} {r['ci_low']:>6.1%}-{r['ci_high']:<6.1%} {each:>24} "
              f"{r.get('teacher_tokens', 0):>12}")
    for key, d in result["paired"]["detail"].items():
        print(f"{key}: {d['mean']:+.1%} [{d['ci_low']:+.1%}, {d['ci_high']:+.1%}] p={d['p_value']:.3g} "
              f"(df {d['df']:.1f})")
    chosen = result.get("chosen_on_dev") or {}
    if chosen.get("best"):
        print("mean dev score: " + ", ".join(f"{k} {v:.1%}" for k, v in sorted(chosen["mean_dev"].items(),
                                                                            key=lambda kv: -kv[1]))
              + f"; best on dev: {chosen['best']}")
    if result.get("gap_closed") is not None:
        print(f"gap closed (d-b)/(g-b): {result['gap_closed']:.0%}")
    print(f"total stage time {result['settings']['total_wall_s']:.0f} s")


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


if __name__ == "__main__":
    main()
