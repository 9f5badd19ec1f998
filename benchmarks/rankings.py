"""Benchmark: cheap evaluation with anchors, and Bradley-Terry interval coverage.

Cheap evaluation (`tiny`): leave-one-model-out over the MMLU-Pro correctness matrix
(../shared/data/mmlu_pro/correctness.csv, 28 models x 12,032 items). For each model, fit the
IRT model and K anchors on the other 27, estimate the held-out model's full-exam accuracy
from its answers to the K anchors, and compare with its true accuracy. Baseline: the mean
of K items drawn at random. Mean absolute errors are averaged over anchor seeds (and over
100 random draws per model for the baseline).

Leaderboard (`bt`): synthetic battles from known strengths with prompt-level effects (each
model is better on some prompts than on others, so the battles of one prompt are
correlated). The "true" ratings are the Bradley-Terry ratings of the population, fitted on
a very large sample of prompts. Each replication draws a fresh set of prompts, fits the
leaderboard, and checks whether each model's 95% interval covers its true rating, for the
prompt-level and the game-level bootstrap.

    python benchmarks/rankings.py               # about 25 minutes on 2 CPU cores
    python benchmarks/rankings.py --quick       # a smoke run: 4 held-out models, 20 replications
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy import stats

from magister.stats.anchors import fit_anchors, read_matrix
from magister.stats.bradley_terry import Battle, _Encoded, leaderboard, to_elo

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data" / "mmlu_pro" / "correctness.csv"


def tiny(k: int, seeds: int, dims: int, embedding: str, held_out: int | None) -> dict:
    correct, items, models = read_matrix(DATA)
    truth = np.nanmean(correct, axis=1)
    errors: dict[str, list[float]] = {"anchor": [], "irt": [], "p_irt": [], "gp_irt": []}
    covered, fit_s, random_errors = [], [], []
    chosen = range(len(models)) if held_out is None else range(held_out)
    for h in chosen:
        train = np.delete(np.arange(len(models)), h)
        for seed in range(seeds):
            start = time.perf_counter()
            anchors = fit_anchors(correct[train], items, [models[i] for i in train], k=k, dims=dims,
                                  embedding=embedding, seed=seed)
            fit_s.append(time.perf_counter() - start)
            answers = {items[i]: bool(correct[h, i]) for i in anchors.anchor_index if not np.isnan(correct[h, i])}
            estimate = anchors.estimate(answers)
            for name in errors:
                errors[name].append(getattr(estimate, name) - truth[h])
            low, high = estimate.ci
            covered.append(low <= truth[h] <= high)
        rng = np.random.default_rng(h)
        sat = np.flatnonzero(~np.isnan(correct[h]))
        random_errors += [correct[h, rng.choice(sat, k, replace=False)].mean() - truth[h] for _ in range(100)]
        print(f"  {models[h]:<28} true {truth[h]:.3f}  gp-IRT {estimate.gp_irt:.3f}  anchor {estimate.anchor:.3f}"
              f"  ({fit_s[-1]:.0f} s)", flush=True)
    mae = {name: float(np.mean(np.abs(e))) for name, e in errors.items()}
    return {"k": k, "dims": dims, "embedding": embedding, "anchor_seeds": seeds, "models": len(list(chosen)),
            "mae_anchor": mae["anchor"], "mae_irt": mae["irt"], "mae_p_irt": mae["p_irt"], "mae_gp_irt": mae["gp_irt"],
            "mae_random": float(np.mean(np.abs(random_errors))), "ci_coverage_gp_irt": float(np.mean(covered)),
            "fit_s": float(np.mean(fit_s))}


def simulate(strength: np.ndarray, prompts: int, battles_per_prompt: int, prompt_sd: float,
             rng: np.random.Generator, first_prompt: int = 0) -> list[Battle]:
    """Battles where model m's strength on prompt p is strength[m] + N(0, prompt_sd)."""
    m = len(strength)
    battles = []
    for p in range(prompts):
        skill = strength + rng.normal(0, prompt_sd, m)
        for _ in range(battles_per_prompt):
            a, b = rng.choice(m, 2, replace=False)
            win = 1 / (1 + np.exp(-(skill[a] - skill[b])))
            u = rng.random()
            winner = "tie" if abs(u - win) < 0.05 else ("a" if u < win else "b")
            battles.append(Battle(str(first_prompt + p), f"model-{a}", f"model-{b}", winner))
    return battles


def bt(models: int, prompts: int, battles_per_prompt: int, prompt_sd: float, replications: int,
       rounds: int) -> dict:
    rng = np.random.default_rng(0)
    strength = rng.normal(0, 0.5, models)
    # The estimand: Bradley-Terry ratings of the whole population of prompts.
    population = simulate(strength, 100_000, battles_per_prompt, prompt_sd, np.random.default_rng(1))
    enc = _Encoded(population)
    true = dict(zip(enc.models, to_elo(enc.fit(), enc.models), strict=True))
    result: dict = {"models": models, "prompts": prompts, "battles_per_prompt": battles_per_prompt,
                    "prompt_sd": prompt_sd, "replications": replications, "rounds": rounds}
    taus, hits = [], {"prompt": [], "game": []}
    widths: dict[str, list[float]] = {"prompt": [], "game": []}
    start = time.perf_counter()
    for r in range(replications):
        battles = simulate(strength, prompts, battles_per_prompt, prompt_sd, np.random.default_rng(100 + r))
        for resample in ("prompt", "game"):
            board = leaderboard(battles, rounds=rounds, resample=resample, seed=r)
            hits[resample] += [row.ci_low <= true[row.model] <= row.ci_high for row in board]
            widths[resample] += [row.ci_high - row.ci_low for row in board]
            if resample == "prompt":
                taus.append(stats.kendalltau([row.rating for row in board], [true[row.model] for row in board])[0])
    result.update(kendall_tau=float(np.mean(taus)), coverage_prompt_bootstrap=float(np.mean(hits["prompt"])),
                  coverage_game_bootstrap=float(np.mean(hits["game"])),
                  ci_width_prompt_bootstrap=float(np.mean(widths["prompt"])),
                  ci_width_game_bootstrap=float(np.mean(widths["game"])),
                  leaderboard_s=(time.perf_counter() - start) / (2 * replications))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=2, help="anchor seeds per held-out model")
    parser.add_argument("--dims", type=int, default=1)
    parser.add_argument("--embedding", default="correctness", choices=["correctness", "irt"])
    parser.add_argument("--replications", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "results" / "rankings.json"))
    args = parser.parse_args()
    print("Cheap evaluation: leave one model out")
    tiny_result = tiny(args.k, 1 if args.quick else args.seeds, args.dims, args.embedding, 4 if args.quick else None)
    print(json.dumps(tiny_result, indent=1))
    print("Leaderboard: synthetic battles")
    bt_result = bt(models=10, prompts=300, battles_per_prompt=6, prompt_sd=1.0,
                   replications=20 if args.quick else args.replications, rounds=1000)
    print(json.dumps(bt_result, indent=1))
    result = {"tiny": tiny_result, "bt": bt_result,
              "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
