"""Judges: graders that ask a model (match, checklist, rubric, pairwise), and checking them against humans."""

from magister.judges.judge import JUDGED, Judge, PairVerdict, Usage, parse_checklist

__all__ = ["JUDGED", "Judge", "PairVerdict", "Usage", "parse_checklist"]
