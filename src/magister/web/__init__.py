"""The web room: `magister view` (`app.py`, FastAPI), what each page shows (`data.py`), SVG charts, Jinja
templates, and the static teaching report (`report.py`, no FastAPI needed)."""
