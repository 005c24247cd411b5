"""Token counting: exact for OpenAI models, a calibrated over-estimate for every other one.

``counter_for(model)`` picks the counter:

- ``o200k_base`` (exact): gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3, o4, chatgpt-4o, gpt-oss
  (and their dated, ``-mini``/``-nano`` and fine-tuned variants);
- ``cl100k_base`` (exact): gpt-4 (not 4o/4.1/4.5), gpt-3.5, text-embedding-3/ada-002;
- anything else (Claude, Llama, Mistral, Qwen, DeepSeek, Gemma, the ``offline`` provider,
  an unknown name): ``EstimatedCounter``, derived from the o200k count.

Both encodings ship inside the ``bpe_openai`` package (nothing is downloaded); each loads
once per process (0.05-0.2 s) and is shared by every counter that uses it.

Calibration of the estimate
---------------------------
The estimate is ``ceil(1.65 * o200k + 0.35 * A + 0.5 * C + 1.5 * X) + 1`` for a non-empty
text, where A counts the non-ASCII characters up to U+058F (Latin accents, Greek,
Cyrillic, Armenian), C those of CJK, kana and Hangul, and X every other non-ASCII
character (Arabic, Hebrew, Indic, Thai, symbols, emoji). It was fitted on the 35 samples of
``tests/golden/context/token_corpus.json`` (prose in English, German, French, Spanish,
Russian, Arabic, Hindi, Chinese, Japanese, Korean, Thai; chat; emoji; Python, JS, Go,
SQL, Rust; JSON; Markdown; logs; URLs and ids; numbers; base64; whitespace runs) against
the real tokenizers of Llama 3, DeepSeek, Mistral (SentencePiece v1 and v3, Tekken),
Qwen 2.5 and 3.6, and an unofficial reimplementation of a 65k-vocabulary Claude
tokenizer (Anthropic publishes none for current models). Measured, per sample:

- the highest reference count over o200k: 1.00-1.14x on English prose and code for
  Llama 3 / Qwen / DeepSeek / Tekken, up to 1.7x on English and code for Mistral's 32k
  SentencePiece vocabularies, 1.6x on German, 2.2x on Russian, 3.8x on Arabic, 4.2x on
  Hindi and 4.0x on Thai (the 32k and 65k vocabularies);
- the estimate is never below any reference on any sample: its smallest margin is +3.8%
  (German, Mistral v1), over the corpus it is 1.33x the highest reference and 2.06x
  o200k; on English prose it is 1.67x o200k (1.64x Mistral v1, 1.67x Llama 3).

So the estimate spends up to a third of a window on headroom for models with big modern
vocabularies: the price of never overflowing the small ones. A counter built from a model's
own tokenizer can be passed instead (anything with ``name`` and ``count``).

Messages
--------
OpenAI's chat format adds 3 tokens per message (4 with a ``name``) and primes the reply
with 3 more. Assembly charges ``MESSAGE_OVERHEAD`` = 4 per item and ``REPLY_PRIMING`` = 3
per prompt; a tool call costs its id, name and arguments plus ``TOOL_CALL_OVERHEAD`` = 8.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Protocol, cast

MESSAGE_OVERHEAD = 4  # per chat message: role and separators (3), a name (1)
REPLY_PRIMING = 3  # the assistant reply's header, once per prompt
TOOL_CALL_OVERHEAD = 8  # per tool call in an assistant message: the call's framing

COUNT_CACHE_SIZE = 4096  # texts whose count is remembered, per encoding
COUNT_CACHE_MAX_CHARS = 2048  # longer texts are counted every time (no memory pinned)
CHUNK_CHARS = 100_000  # counted in pieces: bounded work per call on huge texts

_O200K_MODELS = re.compile(r"^(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|gpt-oss)(\b|$)")
_CL100K_MODELS = re.compile(r"^(gpt-4|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada)(\b|$)")


class TokenCounter(Protocol):
    """Counts the tokens of a text for one model family."""

    @property
    def name(self) -> str:
        """What counts: an encoding name, or ``estimate(...)``."""
        ...

    def count(self, text: str) -> int:
        """Tokens of ``text`` (0 for an empty text)."""
        ...


class _Encoding(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def count(self, text: str) -> int: ...


def _bindings() -> ModuleType:
    """bpe_openai's compiled tokenizer (its vocabularies are built into it), loaded alone:
    the package's Python layer decodes all three bundled vocabularies into dicts when it is
    imported (1-3 s of CPU and ~75 MB held for good) and nothing here needs them."""
    loaded = sys.modules.get("bpe_openai._bindings")
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("bpe_openai")  # finds it, does not import it
    if package is None or package.origin is None:
        raise ImportError("bpe-openai is not installed")
    library = next(Path(package.origin).parent.glob("_bindings*.so"))
    spec = importlib.util.spec_from_file_location("_bindings", library)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def load_encoding(name: str) -> _Encoding:
    """The bundled encoding ``name`` ("o200k_base" or "cl100k_base"), loaded once."""
    return cast(_Encoding, _bindings().tokenizer_for_encoding(name))


class BpeCounter:
    """Exact counts with one of OpenAI's encodings. Identical short texts are counted once
    (a bounded LRU: log entries are immutable and come back every turn)."""

    __slots__ = ("_cached", "_encoding", "name")

    def __init__(self, encoding: str, cache_size: int = COUNT_CACHE_SIZE) -> None:
        self.name = encoding
        self._encoding = load_encoding(encoding)
        self._cached = functools.lru_cache(maxsize=cache_size)(self._count)

    def count(self, text: str) -> int:
        if not text:
            return 0
        if len(text) <= COUNT_CACHE_MAX_CHARS:
            return self._cached(text)
        return self._count(text)

    def _count(self, text: str) -> int:
        try:
            return self._count_valid(text)
        except UnicodeEncodeError:  # lone surrogates: counted as the U+FFFD they become
            return self._count_valid(text.encode("utf-8", "replace").decode("utf-8"))

    def _count_valid(self, text: str) -> int:
        if len(text) <= CHUNK_CHARS:
            return self._encoding.count(text)
        # Counted in pieces cut after a newline (else a space): a token or so off per cut.
        total = 0
        start = 0
        while start < len(text):
            end = min(start + CHUNK_CHARS, len(text))
            if end < len(text):
                cut = text.rfind("\n", start, end)
                if cut <= start:
                    cut = text.rfind(" ", start, end)
                if cut > start:
                    end = cut + 1
            total += self._encoding.count(text[start:end])
            start = end
        return total


# Non-ASCII characters by how much worse than o200k small vocabularies do on them.
_ALPHABETIC = re.compile(r"[\u0080-\u058f]")  # Latin accents, Greek, Cyrillic, Armenian
_CJK = re.compile(r"[\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


class EstimatedCounter:
    """An over-estimate for models whose tokenizer is not at hand, from the o200k count
    and the text's scripts (calibration in the module docstring)."""

    __slots__ = ("_base", "alphabetic", "cjk", "factor", "name", "other", "per_text")

    def __init__(
        self,
        base: BpeCounter,
        factor: float = 1.65,
        alphabetic: float = 0.35,
        cjk: float = 0.5,
        other: float = 1.5,
        per_text: int = 1,
    ) -> None:
        self._base = base
        self.factor = factor
        self.alphabetic = alphabetic
        self.cjk = cjk
        self.other = other
        self.per_text = per_text
        self.name = f"estimate({base.name}*{factor})"

    def count(self, text: str) -> int:
        if not text:
            return 0
        raw = self.factor * self._base.count(text)
        if not text.isascii():
            a = len(_ALPHABETIC.findall(text))
            c = len(_CJK.findall(text))
            x = len(_NON_ASCII.findall(text)) - a - c
            raw += self.alphabetic * a + self.cjk * c + self.other * x
        return math.ceil(raw) + self.per_text


def encoding_for(model: str) -> str | None:
    """The OpenAI encoding of ``model``, or None when it is not an OpenAI model.

    Provider prefixes (``openai/``, ``azure/``), fine-tune names (``ft:gpt-4o-mini:org::id``)
    and Ollama-style tags (``gpt-oss:20b``) are looked through.
    """
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:]
    name = name.rsplit("/", 1)[-1].split(":", 1)[0]
    if _O200K_MODELS.match(name):
        return "o200k_base"
    if _CL100K_MODELS.match(name):
        return "cl100k_base"
    return None


@functools.cache
def _exact(encoding: str) -> BpeCounter:
    return BpeCounter(encoding)


@functools.cache
def _estimate() -> EstimatedCounter:
    return EstimatedCounter(_exact("o200k_base"))


def counter_for(model: str) -> TokenCounter:
    """The counter for ``model``: exact for OpenAI's models, else the calibrated estimate.
    Counters are shared per encoding (and their count caches with them)."""
    encoding = encoding_for(model)
    return _exact(encoding) if encoding else _estimate()


def truncate_to_tokens(
    counter: TokenCounter, text: str, max_tokens: int, marker: str
) -> tuple[str, int]:
    """``text`` cut so that it and ``marker`` (appended when cut) take at most ``max_tokens``.

    Returns the text and its count. The head is kept. When even ``marker`` alone does not
    fit, the result is ``marker`` alone, over ``max_tokens``: callers size the minimum.
    """
    full = counter.count(text)
    if full <= max_tokens:
        return text, full
    lo, hi = 0, len(text)  # the longest prefix that fits lies in [lo, hi)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if counter.count(text[:mid] + marker) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    # Counts are not strictly monotonic in the prefix length: check the result, back off.
    while lo > 0 and counter.count(text[:lo] + marker) > max_tokens:
        lo = lo * 15 // 16
    out = text[:lo] + marker
    return out, counter.count(out)
