"""Self-enhancement: an LLM judge favours answers from its own model family (Zheng et al. 2023
measured GPT-4 and Claude-v1 preferring their own answers). distill cannot remove that bias, so it
says when a judge grades its own family: when the judge's and a judged model's names share a
family prefix.
"""

from __future__ import annotations

import re

_FAMILY = re.compile(r"[a-z]{3,}")  # "gpt" of gpt-4o, "llama" of meta-llama/Llama-3-8B, "smollm" of smollm2-135m


def family(model: str) -> str | None:
    """The family prefix of a model name: the leading letters of its last path part, lowercased
    (None when it has fewer than three, e.g. a folder named "o1")."""
    name = re.split(r"[/\\]", model.rstrip("/\\"))[-1].lower()
    found = _FAMILY.match(name)
    return found.group(0) if found else None


def self_judged(judge: str, models: list[str]) -> list[str]:
    """The judged models that share the judge's family prefix."""
    prefix = family(judge)
    return [m for m in dict.fromkeys(models) if prefix and family(m) == prefix]


def self_enhancement_note(judge: str, models: list[str]) -> str | None:
    """One sentence for the results and the card when the judge grades its own family, else None."""
    same = self_judged(judge, models)
    if not same:
        return None
    return (f"Self-enhancement risk: the judge {judge} shares its name prefix ({family(judge)}) with "
            f"{', '.join(same)}; LLM judges favour their own family's answers, so read those scores with care.")
