"""Teaching strategies, one module each, looked up by name."""

from __future__ import annotations

from types import ModuleType

from magister.teach.strategies import contrast, explain, new, pairs, rephrase, replay, similar
from magister.teach.strategies.base import Job, Mined

STRATEGIES: dict[str, ModuleType] = {m.name: m for m in (contrast, pairs, similar, rephrase, explain, new, replay)}

__all__ = ["STRATEGIES", "Job", "Mined"]
