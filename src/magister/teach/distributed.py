"""Train one student data-parallel: the entry point `torchrun` (or `accelerate launch`) starts on every process.

    torchrun --nproc-per-node 2 -m magister.teach.distributed --base DIR --items data.jsonl \\
        --exam exam.jsonl --config train.yaml --out runs/r

`--items` is the training data (any exam file, or the `data.jsonl` of a teaching round), `--exam`
the exam whose prompt the student learns to answer (its instructions and labels), `--config` a
YAML (or JSON) file of TrainConfig fields (`train:` inside a teach config is read as well). Every
process runs `magister.teach.train.train()` on its share of each batch (gloo on CPU, NCCL on
GPUs); rank 0 alone writes `out/adapter`, `out/model` and `out/train.json` (the TrainReport and the
world size), the others wait for it. Run without a launcher it trains in one process.

GPU sharding with FSDP or DeepSpeed through an accelerate config is described, untested, in
`magister.teach.train`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from magister.errors import ConfigError, MagisterError
from magister.teach.config import TrainConfig
from magister.types import Item


def read_train_config(path: Path | None) -> TrainConfig:
    """TrainConfig from a YAML/JSON file: its fields at the top, or under `train:` as in a teach config."""
    if path is None:
        return TrainConfig()
    import yaml
    from pydantic import ValidationError

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read the train config {path}: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the train config must be a mapping of field: value")
    if isinstance(data.get("train"), dict):
        data = data["train"]
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(f"{path}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def _read_items(path: Path) -> list[Item]:
    """A teaching round's data.jsonl (Magister's own Item rows, meta and rationales kept), else [] (an exam file)."""
    from pydantic import ValidationError

    try:
        rows = [line for line in path.read_text().splitlines() if line.strip()]
        first = json.loads(rows[0]) if rows else None
        if not isinstance(first, dict) or not {"id", "input", "reference", "kind"} <= set(first):
            return []
        return [Item.model_validate_json(line) for line in rows]
    except (OSError, ValueError, ValidationError):
        return []


def run(base: Path, items_path: Path, exam_path: Path, config: TrainConfig, out: Path,
        progress: bool = True) -> dict[str, object]:
    """Train on every process of the launch; returns (and on rank 0 writes) the report with the world size."""
    from magister.exams.load import load_exam
    from magister.jsonl import write_json
    from magister.teach.train import train
    from magister.types import Exam, Kind

    exam = load_exam(exam_path)
    items = _read_items(items_path) or load_exam(items_path).items
    labels = next((i.labels for i in exam.items if i.labels), None)
    if labels:  # the exam's whole label set in the prompt, as the teaching loop asks it
        items = [i.model_copy(update={"labels": labels}) if i.kind is Kind.classification else i for i in items]
    prompt = Exam(name=exam.name, items=[], instructions=exam.instructions)
    report = train(base, items, prompt, config, out, progress=progress)
    import torch.distributed as dist

    joined = dist.is_initialized()  # the process group the Trainer (accelerate) set up, not just the launcher's env
    world = dist.get_world_size() if joined else 1
    result: dict[str, object] = {**report.to_dict(), "world_size": world,
                                 "backend": str(dist.get_backend()) if joined else None}
    if not joined or dist.get_rank() == 0:
        write_json(out / "train.json", result)
        print(f"trained {report.examples} examples in {report.steps} steps on {world} process(es): "
              f"loss {report.first_loss:.3f} -> {report.last_loss:.3f}, {report.tokens_per_s:.0f} tok/s; "
              f"wrote {out}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m magister.teach.distributed", description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="The student: a transformers model directory.")
    parser.add_argument("--items", type=Path, required=True,
                        help="Training data: an exam file or a round's data.jsonl.")
    parser.add_argument("--exam", type=Path, required=True, help="The exam whose prompt the student learns.")
    parser.add_argument("--config", type=Path, help="TrainConfig fields (YAML or JSON).")
    parser.add_argument("--out", type=Path, required=True, help="Where adapter/, model/ and train.json go.")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        run(args.base, args.items, args.exam, read_train_config(args.config), args.out, progress=not args.no_progress)
    except MagisterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        try:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        except ImportError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
