"""From what someone typed to an FTS5 query, and from BM25 to a ranking with recency.

Pure functions: no SQLite, no clock (``now_ms`` is passed in).
"""

from __future__ import annotations

import math
import re

MAX_TERMS = 16
# Words too common to say anything on their own: matched with OR they would pull in most
# of the corpus (and cost a scan of their long posting lists) for no ranking signal.
STOPWORDS = frozenset(
    """a about after all also am an and any are as at be been but by can could did do does
    for from had has have he her his how i if in into is it its me my no not of on or our
    she so than that the their them then there these they this to too up us was we were
    what when where which who why will with would you your""".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)

RECENCY_WEIGHT = 0.5  # a hit from now scores up to 1.5x the same hit from long ago
RECENCY_HALF_LIFE_DAYS = 30.0
DAY_MS = 86_400_000


def terms(text: str) -> list[str]:
    """The distinct search words of ``text``, lowercased, without stopwords (all of them
    when every word is a stopword), at most ``MAX_TERMS``."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))[:MAX_TERMS]


def match_expression(text: str) -> str | None:
    """An FTS5 MATCH expression: each word quoted (FTS5 syntax in the input is text, not
    operators), joined with OR so that BM25 ranks by how many and how rare the words
    matched are — "what did we decide about billing" finds "billing: we decided X".
    None when ``text`` holds no word."""
    words = terms(text)
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def ranked(bm25: float, ts_ms: int, now_ms: int) -> float:
    """Relevance (BM25, higher is better; FTS5 reports it negated) boosted by recency:
    ``relevance * (1 + RECENCY_WEIGHT * 0.5 ** (age / half-life))``."""
    relevance = -bm25
    age_days = max(0, now_ms - ts_ms) / DAY_MS
    return relevance * (1.0 + RECENCY_WEIGHT * math.pow(0.5, age_days / RECENCY_HALF_LIFE_DAYS))
