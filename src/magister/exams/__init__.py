"""Exams: loading items from files and datasets (`load.py`), and the request an item becomes (`prompt.py`)."""
