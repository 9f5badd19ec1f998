"""Teach: the error-driven teaching loop (LLM2LLM and more), with verified synthetic data and LoRA training."""

from magister.teach.config import TeachConfig, TrainConfig, load_config
from magister.teach.loop import Round, Teach

__all__ = ["Teach", "Round", "TeachConfig", "TrainConfig", "load_config"]
