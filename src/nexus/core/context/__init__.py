"""Context assembly for agents: what a model sees of a room, within its token budget.

This commit: token counting (``tokens``).
"""

from .tokens import (
    BpeCounter,
    EstimatedCounter,
    TokenCounter,
    counter_for,
    encoding_for,
    truncate_to_tokens,
)

__all__ = [
    "BpeCounter",
    "EstimatedCounter",
    "TokenCounter",
    "counter_for",
    "encoding_for",
    "truncate_to_tokens",
]
