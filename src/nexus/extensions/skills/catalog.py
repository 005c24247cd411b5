"""The skills catalog: the pinned block that tells an agent which skills it may activate.

Only names and descriptions (progressive disclosure: a skill's instructions load when the
agent activates it). Skills are listed by name, as many as fit ``budget`` tokens with the
closing note; the note says how many were left out. Tokens are estimated at one per three
UTF-8 bytes, an over-estimate for prose with any common tokenizer, so the real count stays
within the budget and the block is the same for every model.
"""

from __future__ import annotations

from collections.abc import Sequence

HEAD = (
    "Skills you can use. When a request matches one, call activate_skill with its name to "
    "load its instructions, then follow them:"
)
MORE = "({left} more skill(s) not listed: the catalog is limited to {budget} tokens)"


def estimate_tokens(text: str) -> int:
    return (len(text.encode()) + 2) // 3


def catalog_block(skills: Sequence[tuple[str, str]], budget: int) -> str:
    """The catalog of ``skills`` ((name, description) pairs) within ``budget`` tokens; an
    empty string when there are none or not even the heading fits."""
    if not skills:
        return ""
    entries = sorted(skills)
    lines = [HEAD]
    used = estimate_tokens(HEAD)
    worst_note = estimate_tokens(MORE.format(left=len(entries), budget=budget)) + 1
    if used + worst_note > budget:
        return ""
    for i, (name, description) in enumerate(entries):
        line = f"- {name}: {' '.join(description.split())}"
        cost = estimate_tokens(line) + 1  # the newline
        note = 0 if i == len(entries) - 1 else worst_note
        if used + cost + note > budget:
            lines.append(MORE.format(left=len(entries) - i, budget=budget))
            break
        lines.append(line)
        used += cost
    return "\n".join(lines)
