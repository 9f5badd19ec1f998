"""The draft: a new example as a teacher wrote it, before and after the filters, and how it becomes an Item.

`magister write` (`synth.write`) and the teaching loop's strategies (`teach.strategies`) both produce
drafts; the filters (`synth.contamination`, `synth.dedupe`, `synth.verify`) set a draft's `reason` when
they reject it, and `reason_kind` names the filter for counting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from magister.types import Item


@dataclass
class Draft:
    """A new example as the teacher wrote it; `reason` is set when it is rejected."""

    input: str
    reference: str
    strategy: str
    source: str  # the item it was written from, or 'label:X' for an item written for label X
    rationale: str | None = None
    reason: str | None = None
    replay: bool = False  # a copy of a labelled seed item (`replay`): not deduped, not verified
    extra: dict[str, object] = field(default_factory=dict)


def as_item(draft: Draft, like: Item, id: str) -> Item:
    """A draft as an Item of the same kind, label set and options as `like` (the item it was written from)."""
    meta: dict[str, object] = {"strategy": draft.strategy, "source": draft.source}
    if not draft.replay:
        meta["written_by"] = "teacher"
    if draft.rationale:
        meta["rationale"] = draft.rationale
    return Item(id=id, input=draft.input, reference=draft.reference, kind=like.kind, labels=like.labels,
                choices=like.choices, meta=meta)


KINDS = ("duplicate", "contaminated", "verifier", "surplus", "copies", "empty", "teacher labelled", "no answer",
         "no rationale", "rationale does not")


def reason_kind(reason: str) -> str:
    """A rejection reason without its particulars, for counting ('duplicate of r1-3 (rouge 0.8)' -> 'duplicate')."""
    for kind in KINDS:
        if reason.startswith(kind):
            return kind
    return reason


__all__ = ["Draft", "as_item", "reason_kind"]
