"""The skills catalog: the pinned block that tells an agent which skills it may activate.

Only names and descriptions (progressive disclosure: a skill's instructions load when the
agent activates it). Skills are listed by name, as many as fit ``budget`` tokens together
with the closing note, which says how many were left out. Tokens are counted with the
agent's model's counter (``core.context.counter_for``, the one context assembly uses), so
the block's count in the context trace is within the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

HEAD = (
    "Skills you can use. When a request matches one, call activate_skill with its name to "
    "load its instructions, then follow them:"
)
MORE = "({left} more skill(s) not listed: the catalog is limited to {budget} tokens)"
Count = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """One token per three UTF-8 bytes: a rough count for tests and tools without a model."""
    return (len(text.encode()) + 2) // 3


def _block(entries: list[str], total: int, budget: int) -> str:
    lines = [HEAD, *entries]
    if len(entries) < total:
        lines.append(MORE.format(left=total - len(entries), budget=budget))
    return "\n".join(lines)


def catalog_block(
    skills: Sequence[tuple[str, str]], budget: int, count: Count = estimate_tokens
) -> str:
    """The catalog of ``skills`` ((name, description) pairs) within ``budget`` tokens as
    ``count`` counts them; an empty string when there are none or not even the heading
    and the note fit."""
    if not skills:
        return ""
    lines = [f"- {name}: {' '.join(description.split())}" for name, description in sorted(skills)]
    total = len(lines)
    note = count(MORE.format(left=total, budget=budget)) + 1
    used = count(HEAD)
    if used + note > budget:
        return ""
    kept = 0
    for i, line in enumerate(lines):
        cost = count(line) + 1  # its newline
        if used + cost + (0 if i == total - 1 else note) > budget:
            break
        used += cost
        kept += 1
    # Counts of joined text are not exactly the sum of the parts: check the whole, back off.
    block = _block(lines[:kept], total, budget)
    while kept and count(block) > budget:
        kept -= 1
        block = _block(lines[:kept], total, budget)
    return block
