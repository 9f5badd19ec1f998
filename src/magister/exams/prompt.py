"""Turn an Item into the Request a model sees: instructions, worked examples, the question.

Items with a closed answer set (classification labels, choice letters) are asked as a
constrained choice when the backend can score continuations; otherwise the model writes
free text that a grader parses.
"""

from __future__ import annotations

from magister.types import Exam, Item, Kind, Message, Request, letters

DEFAULT_INSTRUCTIONS = {
    Kind.classification: "Classify the input. Answer with exactly one label from: {labels}.",
    Kind.multiple_choice: "Answer the multiple-choice question with the letter of the correct option only.",
    Kind.numeric: "Solve the problem. Give the final answer as a number on the last line, after '#### '.",
    Kind.free_form: "Answer the question briefly and precisely.",
}

MAX_TOKENS = {Kind.classification: 16, Kind.multiple_choice: 16, Kind.numeric: 256, Kind.free_form: 256}


def question_text(item: Item) -> str:
    """The user turn for an item: its input, and its lettered options for multiple choice."""
    if item.kind is Kind.multiple_choice and item.choices:
        options = "\n".join(f"{letter}. {text}" for letter, text in zip(letters(len(item.choices)), item.choices))
        return f"{item.input}\n\n{options}"
    return item.input


def answer_text(item: Item) -> str:
    """How a worked example's answer is written: the reference, in the form the grader expects."""
    if item.kind is Kind.numeric:
        solution = item.meta.get("solution")
        return str(solution) if solution else f"#### {item.reference}"
    return item.reference


def instructions(item: Item, exam: Exam) -> str:
    template = exam.instructions or DEFAULT_INSTRUCTIONS[item.kind]
    return template.replace("{labels}", ", ".join(item.labels or []))


def build_request(item: Item, exam: Exam, *, use_choices: bool, max_tokens: int | None = None,
                  seed: int = 0) -> Request:
    """The request for one item. `use_choices` asks the backend to score the candidates."""
    messages = [Message(role="system", content=instructions(item, exam))]
    for shot in (s for s in exam.fewshot if s.kind is item.kind):
        messages.append(Message(role="user", content=question_text(shot)))
        messages.append(Message(role="assistant", content=answer_text(shot)))
    messages.append(Message(role="user", content=question_text(item)))
    candidates = item.candidates if use_choices else None
    return Request(messages=messages, choices=candidates, max_tokens=max_tokens or MAX_TOKENS[item.kind],
                   temperature=0.0, seed=seed)
