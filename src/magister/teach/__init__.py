"""Teach: the error-driven teaching loop (LLM2LLM and more), with verified synthetic data and LoRA training.

    config.py      TeachConfig and TrainConfig, read from YAML (every field also `--set FIELD=VALUE`)
    loop.py        Teach: rounds of mine, write, filter, train, dev, exam, each resumable
    rundir.py      every path of a run's folder
    strategies/    one module per way of turning a mined error into new examples
    train.py       LoRA (or full) fine-tuning on exactly the exam's prompts, on TRL's SFTTrainer (or distillation)
    distributed.py the same training from files, under `torchrun` (data-parallel, rank 0 writes)
    seeds.py       one run per training seed, compared with two-way intervals
    report.py      report.json, the curve and the terminal table (the HTML page is `magister.web.report`)
"""

from magister.teach.config import TeachConfig, TrainConfig, load_config
from magister.teach.loop import Round, Teach

__all__ = ["Teach", "Round", "TeachConfig", "TrainConfig", "load_config"]
