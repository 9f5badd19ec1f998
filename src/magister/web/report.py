"""The teaching run as one standalone HTML file: the same template as `magister view`'s /teach page.

`write` writes the whole report of a teaching run: `report.json` and `curve.png` (`magister.teach.report`)
and `report.html`, every round and every example. It needs no FastAPI: `magister teach` works without the
`[web]` extra.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from magister.jsonl import write_atomic
from magister.teach import report as teach_report
from magister.teach.rundir import RunDir
from magister.web.charts import teach_context
from magister.web.data import teach_page
from magister.web.templates import render


def html_page(out: Path) -> str:
    """The page of the teaching run in `out`, with its script inlined (it opens from the file system)."""
    script = resources.files("magister.web").joinpath("static/app.js").read_text(encoding="utf-8")
    context = teach_context(teach_page(out), run_link="http://127.0.0.1:8765/runs/")
    return render("teach.html", standalone=True, inline_js=script, **context)


def write(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write report.json, curve.png and report.html into `out`, each atomically; returns their paths."""
    paths = teach_report.write(report, out)
    if report["rounds"]:
        paths["html"] = write_atomic(RunDir(out).report_html, html_page(out))
    return paths


__all__ = ["html_page", "write"]
