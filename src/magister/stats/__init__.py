"""Statistics for scores: every number Magister reports comes with its uncertainty from here.

    intervals.py      Wilson (accuracy) and t (mean score) intervals for one score
    paired.py         two runs compared item by item on the same items
    runs.py           scores over several training seeds (seed x item, two-way intervals)
    agreement.py      judge-human agreement (Cohen's kappa, weighted kappa, bootstrap intervals)
    bradley_terry.py  pairwise rankings with intervals
    irt.py, anchors.py  item response theory and cheap evaluation on anchor items (tinyBenchmarks)
"""

from magister.stats.intervals import mean_ci, wilson

__all__ = ["wilson", "mean_ci"]
