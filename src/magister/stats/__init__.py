"""Statistics for scores: confidence intervals (more in later modules)."""

from magister.stats.intervals import mean_ci, wilson

__all__ = ["wilson", "mean_ci"]
