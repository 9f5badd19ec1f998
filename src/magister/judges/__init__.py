"""Judges: graders that ask a model (match, checklist, rubric, pairwise), and checking them against humans.

    judge.py       Judge: the judged graders, the injection screen and the rules-first cascade
    prompts.py     every judge prompt, in one place
    check.py       `magister judge-check`: a judge's agreement with human labels
    calibrate.py   thresholds and calibration of judge confidence on labelled items
"""

from magister.judges.judge import JUDGED, Judge, PairVerdict, Usage, parse_checklist

__all__ = ["JUDGED", "Judge", "PairVerdict", "Usage", "parse_checklist"]
