"""The teach report: a per-round table for the terminal, the report as JSON, and a learning curve (PNG).

Written next to the run: `report.json` and `curve.png`; `magister.web.report` adds `report.html`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.table import Table

from magister.jsonl import write_atomic, write_json
from magister.teach.rundir import RunDir


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _row_cells(row: dict[str, Any]) -> list[str]:
    exam = row["exam"]
    change = row.get("vs_round0")
    delta = "-" if not change else f"{change['diff']:+.1%} (p={change['p_value']:.3g})"
    wall = row.get("wall_s", {})
    score = f"{_pct(exam['accuracy'])} [{_pct(exam['ci_low'])}-{_pct(exam['ci_high'])}]" if exam else "not trained"
    dev = _pct(row["dev"]["accuracy"]) if row.get("dev") else "-"
    return [str(row["round"]), dev, score, delta,
            f"{row['mined']}/{row['generated']}/{row['deduped']}/{row['rejected']}/{row['kept']}",
            str(row["data"]), str(row["teacher_tokens"]),
            " ".join(f"{k[0]}{v:.0f}" for k, v in wall.items() if v >= 0.5) or "-"]


HEADERS = ["round", "dev", "exam accuracy [95% CI]", "vs round 0 (p)", "mined/written/dup/rejected/kept", "data",
           "teacher tokens", "wall s"]


def table(report: dict[str, Any]) -> Table:
    title = f"teach: {report['config']['student']} taught by {report['config']['teacher']}"
    out = Table(title=title, caption=f"stopped: {report['stopped']}. {verifier_note(report)}Wall time in seconds per "
                "stage: m(ine), w(rite), f(ilter: dedupe and verify), t(rain), d(ev), e(xam). Decisions (patience, the "
                "chosen round) read the dev score; the exam is only reported. 'vs round 0' is McNemar's "
                "exact test on the items, each round's trained model held fixed: it does not count the spread "
                "between training seeds, which can be larger (compare seeds with magister.stats.runs).")
    for header in HEADERS:
        out.add_column(header, justify="left" if header in ("round", "wall time") else "right")
    base = report.get("baseline")
    if base:
        low, high = report["baseline_ci"]
        out.add_row("base", "-", f"{_pct(base['accuracy'])} [{_pct(low)}-{_pct(high)}]", *["-"] * 4,
                    f"e{base.get('wall_s', 0):.0f}")
    for row in report["rounds"]:
        cells = _row_cells(row)
        if report.get("chosen_round") == row["round"]:
            cells[0] += " (chosen)"
        out.add_row(*cells)
    return out


def verifier_note(report: dict[str, Any]) -> str:
    """One sentence on the verifier's check, when it was checked."""
    checked = [r["verifier"] for r in report["rounds"] if r.get("verifier")]
    if not checked:
        return ""
    v = checked[0]
    bar, name = v.get("bar", v["majority"]), v.get("bar_name", "the most common answer")
    if v["trusted"]:
        verdict = "trusted"
    elif v.get("veto_at") is not None:
        verdict = f"not trusted, so it only vetoed, at confidence >= {v['veto_at']:.2f}"
    else:
        verdict = "not trusted, so new examples were not verified"
    who = f" ({v['verifier']})" if v.get("verifier") else ""
    return (f"Verifier{who}: {v['accuracy']:.0%} right on {v['n']} human-labelled seed items (95% lower bound "
            f"{v['ci_low']:.0%}; {name}: {bar:.0%}): {verdict}. ")


def curve_png(report: dict[str, Any]) -> bytes:
    """Held-out accuracy per round with its 95% CI, and the untrained student as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r for r in report["rounds"] if r["exam"]]
    xs = [r["round"] for r in rounds]
    ys = [r["exam"]["accuracy"] for r in rounds]
    errors = [[y - r["exam"]["ci_low"] for y, r in zip(ys, rounds)], [r["exam"]["ci_high"] - y for y, r in zip(ys, rounds)]]
    figure, axis = plt.subplots(figsize=(6, 3.6), dpi=110)
    axis.errorbar(xs, ys, yerr=errors, marker="o", capsize=4, label="student after round")
    if report.get("baseline"):
        axis.axhline(report["baseline"]["accuracy"], linestyle="--", color="grey", label="untrained student")
    axis.set_xlabel("round")
    axis.set_ylabel("held-out accuracy")
    axis.set_xticks(xs)
    axis.set_ylim(0, 1)
    axis.legend(loc="lower right")
    axis.set_title("Learning curve (95% Wilson intervals)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def write(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write report.json and curve.png into `out`, each atomically; returns their paths. The HTML page is a view
    (`magister.web.report.write` writes all three)."""
    paths = {"json": RunDir(out).report, "png": RunDir(out).curve}
    write_json(paths["json"], report)
    if report["rounds"]:
        write_atomic(paths["png"], curve_png(report))
    return paths
