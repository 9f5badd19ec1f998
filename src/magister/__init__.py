"""Magister: teach small language models from big ones, and prove the result with exams."""

from magister.errors import BackendError, ConfigError, DataError, MagisterError, RateLimitError
from magister.exams.load import FieldMap, load_exam
from magister.graders import get_grader
from magister.models.base import Model, load_model
from magister.sit import Summary, sit
from magister.store import Store
from magister.types import Answer, Completion, Exam, Grade, Item, Kind, Message, Request

__all__ = ["Answer", "BackendError", "Completion", "ConfigError", "DataError", "Exam", "FieldMap", "Grade", "Item",
           "Kind", "MagisterError", "Message", "Model", "RateLimitError", "Request", "Store", "Summary", "get_grader",
           "load_exam", "load_model", "sit"]
