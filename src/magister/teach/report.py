"""The teach report: a per-round table for the terminal, and a learning curve (PNG, and an HTML page).

Written next to the run: `report.json`, `curve.png` and `report.html`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from rich.table import Table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _row_cells(row: dict[str, Any]) -> list[str]:
    exam = row["exam"]
    change = row.get("vs_round0")
    delta = "-" if not change else f"{change['diff']:+.1%} (p={change['p_value']:.3g})"
    wall = row.get("wall_s", {})
    score = f"{_pct(exam['accuracy'])} [{_pct(exam['ci_low'])}-{_pct(exam['ci_high'])}]" if exam else "not trained"
    return [str(row["round"]), score, delta,
            f"{row['mined']}/{row['generated']}/{row['deduped']}/{row['rejected']}/{row['kept']}",
            str(row["data"]), str(row["teacher_tokens"]),
            " ".join(f"{k[0]}{v:.0f}" for k, v in wall.items() if v >= 0.5) or "-"]


HEADERS = ["round", "accuracy [95% CI]", "vs round 0 (p)", "mined/written/dup/rejected/kept", "data",
           "teacher tokens", "wall s"]


def table(report: dict[str, Any]) -> Table:
    title = f"teach: {report['config']['student']} taught by {report['config']['teacher']}"
    out = Table(title=title, caption=f"stopped: {report['stopped']}. {verifier_note(report)}Wall time in seconds per "
                "stage: m(ine), w(rite), f(ilter: dedupe and verify), t(rain), e(xam). 'vs round 0' is McNemar's "
                "exact test on the items, each round's trained model held fixed: it does not count the spread "
                "between training seeds, which can be larger (compare seeds with magister.stats.runs).")
    for header in HEADERS:
        out.add_column(header, justify="left" if header in ("round", "wall time") else "right")
    base = report.get("baseline")
    if base:
        low, high = report["baseline_ci"]
        out.add_row("base", f"{_pct(base['accuracy'])} [{_pct(low)}-{_pct(high)}]", *["-"] * 4,
                    f"e{base.get('wall_s', 0):.0f}")
    for row in report["rounds"]:
        out.add_row(*_row_cells(row))
    return out


def verifier_note(report: dict[str, Any]) -> str:
    """One sentence on the verifier's check, when it was checked."""
    checked = [r["verifier"] for r in report["rounds"] if r.get("verifier")]
    if not checked:
        return ""
    v = checked[0]
    verdict = "trusted" if v["trusted"] else "not trusted, so new examples were not verified"
    return (f"Verifier: {v['accuracy']:.0%} right on {v['n']} seed items (95% lower bound {v['ci_low']:.0%}; the most "
            f"common answer gets {v['majority']:.0%}): {verdict}. ")


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


def html_page(report: dict[str, Any], png: bytes, samples: dict[int, list[dict[str, Any]]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _row_cells(r)) + "</tr>"
                   for r in report["rounds"])
    parts = [f"<h1>{html.escape(table(report).title or 'teach')}</h1>",
             f"<p>Stopped: {html.escape(str(report['stopped']))}. Teacher: {report['teacher_calls']} calls, "
             f"{report['teacher_tokens']} tokens. {html.escape(verifier_note(report))}</p>",
             f'<img alt="learning curve" src="data:image/png;base64,{base64.b64encode(png).decode()}">',
             f"<table><tr>{head}</tr>{body}</table>"]
    for number, drafts in samples.items():
        rows = "".join(f"<tr><td>{html.escape(d['strategy'])}</td><td>{html.escape(d['input'])}</td>"
                       f"<td>{html.escape(d['reference'])}</td><td>{html.escape(d['reason'] or 'kept')}</td></tr>"
                       for d in drafts)
        parts.append(f"<h2>Round {number}: new examples (first {len(drafts)})</h2><table><tr><th>strategy</th>"
                     f"<th>input</th><th>answer</th><th>outcome</th></tr>{rows}</table>")
    style = ("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style>")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Magister teach</title>{style}</head>" \
           f"<body>{''.join(parts)}</body></html>"


def write(report: dict[str, Any], out: Path, samples: int = 30) -> dict[str, Path]:
    """Write report.json, curve.png and report.html into `out`; returns their paths."""
    paths = {"json": out / "report.json", "png": out / "curve.png", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str))
    drafts: dict[int, list[dict[str, Any]]] = {}
    for row in report["rounds"]:
        path = out / f"round-{row['round']}" / "drafts.json"
        if path.exists():
            drafts[row["round"]] = json.loads(path.read_text())[:samples]
    if report["rounds"]:
        png = curve_png(report)
        paths["png"].write_bytes(png)
        paths["html"].write_text(html_page(report, png, drafts))
    return paths
