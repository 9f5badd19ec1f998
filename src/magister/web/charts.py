"""Small inline SVG charts (numbers only, no text from models): the learning curve and the training losses.

Drawn in Python so the app and the static teaching report show the same picture without a plotting library.
"""

from __future__ import annotations

from typing import Any

WIDTH, HEIGHT, PAD = 560, 240, 36


def _x(k: int, n: int) -> float:
    return PAD + (WIDTH - 2 * PAD) * (k / max(n - 1, 1))


def _y(v: float, low: float = 0.0, high: float = 1.0) -> float:
    return HEIGHT - PAD - (HEIGHT - 2 * PAD) * ((v - low) / ((high - low) or 1.0))


def _frame(title: str, y_ticks: list[tuple[float, str]], x_ticks: list[tuple[float, str]]) -> list[str]:
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}">',
             f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" class="title">{title}</text>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>']
    for y, label in y_ticks:
        parts.append(f'<text x="{PAD - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
                     f'<line x1="{PAD}" y1="{y:.1f}" x2="{WIDTH - PAD}" y2="{y:.1f}" class="grid"/>')
    for x, label in x_ticks:
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle">{label}</text>')
    return parts


def learning_curve(rounds: list[dict[str, Any]], baseline: dict[str, Any] | None) -> str:
    """Exam accuracy after each round with its 95% interval; the untrained student as a dashed line."""
    scored = [r for r in rounds if r.get("accuracy") is not None]
    n = len(scored)
    parts = _frame("Held-out accuracy per round (95% intervals)",
                   [(_y(v), f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1.0)],
                   [(_x(k, n), f"round {r['round']}") for k, r in enumerate(scored)])
    if baseline and baseline.get("accuracy") is not None:
        y = _y(baseline["accuracy"])
        parts.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{WIDTH - PAD}" y2="{y:.1f}" class="baseline"/>'
                     f'<text x="{WIDTH - PAD}" y="{y - 4:.1f}" text-anchor="end">untrained {baseline["accuracy"]:.1%}'
                     '</text>')
    points, marks = [], []
    for k, r in enumerate(scored):
        x = _x(k, n)
        points.append(f"{x:.1f},{_y(r['accuracy']):.1f}")
        if r.get("ci_low") is not None:
            marks.append(f'<line x1="{x:.1f}" y1="{_y(r["ci_low"]):.1f}" x2="{x:.1f}" y2="{_y(r["ci_high"]):.1f}" '
                         'class="whisker"/>')
        marks.append(f'<circle cx="{x:.1f}" cy="{_y(r["accuracy"]):.1f}" r="4" class="dot">'
                     f'<title>round {r["round"]}: {r["accuracy"]:.1%}</title></circle>')
    if points:
        parts.append(f'<polyline points="{" ".join(points)}" class="line"/>')
    parts += marks
    parts.append("</svg>")
    return "".join(parts)


def loss_curves(rounds: list[dict[str, Any]]) -> str:
    """Training loss per step, one line per round."""
    series = [(r["round"], r["losses"]) for r in rounds if r.get("losses")]
    if not series:
        return ""
    top = max(max(losses) for _, losses in series) or 1.0
    steps = max(len(losses) for _, losses in series)
    parts = _frame("Training loss per step", [(_y(v, 0, top), f"{v:.2g}") for v in (0, top / 2, top)],
                   [(_x(k, steps), str(k)) for k in (0, steps // 2, steps - 1)])
    for number, losses in series:
        line = " ".join(f"{_x(k, steps):.1f},{_y(v, 0, top):.1f}" for k, v in enumerate(losses))
        parts.append(f'<polyline points="{line}" class="loss loss{number % 6}"><title>round {number}</title>'
                     "</polyline>")
    parts.append("".join(f'<text x="{WIDTH - PAD}" y="{PAD + 14 * k}" text-anchor="end" class="loss{n % 6}">'
                         f"round {n}</text>" for k, (n, _) in enumerate(series)))
    parts.append("</svg>")
    return "".join(parts)


def reliability(curve: list[dict[str, Any]]) -> str:
    """The grader's score bins against the share of answers people labelled right; the diagonal is calibrated."""
    if not curve:
        return ""
    parts = _frame("Grader score vs your labels (reliability)", [(_y(v), f"{v:.0%}") for v in (0, 0.5, 1.0)],
                   [(PAD + (WIDTH - 2 * PAD) * v, f"{v:.1f}") for v in (0, 0.5, 1.0)])
    x = lambda v: PAD + (WIDTH - 2 * PAD) * v  # noqa: E731
    parts.append(f'<line x1="{x(0):.1f}" y1="{_y(0):.1f}" x2="{x(1):.1f}" y2="{_y(1):.1f}" class="baseline"/>')
    for b in curve:
        radius = 3 + min(b["n"], 30) / 6
        parts.append(f'<circle cx="{x(b["mean_score"]):.1f}" cy="{_y(b["human_right"]):.1f}" r="{radius:.1f}" '
                     f'class="dot"><title>scores {b["low"]:.1f}-{b["high"]:.1f}: {b["n"]} answers, '
                     f'{b["human_right"]:.0%} labelled right</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def teach_context(page: dict[str, Any], run_link: str = "/runs/") -> dict[str, Any]:
    """The teaching page's template context: the data plus its two charts (no FastAPI: the static report uses it)."""
    return {**page, "curve_svg": learning_curve(page["rounds"], page["baseline"]),
            "loss_svg": loss_curves(page["rounds"]), "run_link": run_link}
