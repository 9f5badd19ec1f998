"""`replay`: the missed seed item itself, once more, with its human label; no teacher call.

A weak teacher mostly copies the item it is shown (the embedded 135M model does), so the
gain LLM2LLM gets from it is the missed item trained again. `replay` does that on purpose,
for free: every round an item is missed it gains one more copy, so items the student keeps
missing weigh more. Copies carry the seed label, so they are neither deduped nor verified.
"""

from __future__ import annotations

from magister.teach.strategies.base import Draft, Mined

name = "replay"
teacher = False  # drafts come from the mined items, not from teacher calls


def drafts(mined: list[Mined]) -> list[Draft]:
    return [Draft(input=m.item.input, reference=m.item.reference, strategy=name, source=m.item.id, replay=True)
            for m in mined]
