"""Jinja templates shared by `magister view` and the static teaching report (one template, two uses).

Autoescaping is on for every template: model output is untrusted and is only ever inserted as text.
"""

from __future__ import annotations

import datetime
import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _when(timestamp: float | None) -> str:
    return "-" if timestamp is None else datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("magister.web", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=_pct, when=_when, num=_num, tojson_pretty=lambda v: json.dumps(v, indent=2,
                                                                                             ensure_ascii=False))
    return env


def stylesheet() -> str:
    """The one stylesheet, inlined into standalone pages (the teaching report) and served to the app."""
    return resources.files("magister.web").joinpath("static/style.css").read_text(encoding="utf-8")


def render(template: str, **context: Any) -> str:
    context.setdefault("standalone", False)
    context.setdefault("token", None)
    if context["standalone"]:
        context.setdefault("inline_css", stylesheet())
    return environment().get_template(template).render(**context)
