"""One teaching config over several training seeds, and the two-way analysis of what it changed.

A single trained student is one draw: the same data and settings with another training seed
(shuffle order, adapter initialisation) can move the exam score by several points. So
`magister teach --train-seeds 0,1,2` runs the loop once per seed, in `OUT/seed-N`, and compares
the last trained round with round 0 (the seed-only student) over all of them with
`magister.stats.runs`: the interval counts the spread between trainings as well as the items.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from magister.stats.runs import compare_trainings, runs_interval
from magister.teach.config import TeachConfig
from magister.teach.loop import Teach
from magister.teach.rundir import RunDir


def seed_config(config: TeachConfig, seed: int) -> TeachConfig:
    """The config of one training seed: its own run directory and `train.seed`."""
    return config.model_copy(update={"out": config.out / f"seed-{seed}",
                                     "train": config.train.model_copy(update={"seed": seed})})


def final_grades(out: Path, round_: int | None = None) -> dict[str, bool]:
    """The grades of round `round_` (default: the last round that trained a student) of a run directory."""
    if round_ is None:
        round_ = [r.number for r in RunDir(out).rounds() if r.grades.exists()][-1]
    return json.loads(RunDir(out).round(round_).grades.read_text())


def grid(runs: Sequence[dict[str, bool]], items: Sequence[str]) -> list[list[bool]]:
    """Training runs x items: each run's grades in one item order."""
    return [[run[i] for i in items] for run in runs]


def compare_seeds(outs: Sequence[Path]) -> dict[str, Any]:
    """Last round vs round 0 over the training runs in `outs`: both arms' intervals and the paired difference."""
    final = [final_grades(out) for out in outs]
    first = [final_grades(out, 0) for out in outs]
    items = sorted(set.intersection(*(set(g) for g in final + first)))
    return {"seeds": len(outs), "items": len(items),
            "round0": runs_interval(grid(first, items)).to_dict(),
            "final": runs_interval(grid(final, items)).to_dict(),
            "final_vs_round0": compare_trainings(grid(final, items), grid(first, items)).to_dict()}


def run_seeds(config: TeachConfig, seeds: Sequence[int], *, resume: bool = False,
              make: Callable[[TeachConfig, bool], Teach] | None = None) -> dict[str, Any]:
    """Run the loop once per training seed (resuming finished ones) and compare them; returns the analysis."""
    outs = []
    for seed in seeds:
        one = seed_config(config, seed)
        again = resume or RunDir(one.out).state.exists() and _finished(one.out)
        teach = make(one, again) if make else Teach(one, resume=again)
        teach.run()
        outs.append(one.out)
    return compare_seeds(outs)


def _finished(out: Path) -> bool:
    state = json.loads(RunDir(out).state.read_text())
    return state.get("stopped") is not None


__all__ = ["compare_seeds", "run_seeds", "seed_config"]
