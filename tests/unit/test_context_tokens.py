"""Token counters: exact OpenAI counts, the calibrated estimate, truncation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus.core.context import (
    BpeCounter,
    EstimatedCounter,
    counter_for,
    encoding_for,
    truncate_to_tokens,
)
from nexus.core.context.tokens import CHUNK_CHARS, load_encoding

CORPUS = Path(__file__).parents[1] / "golden" / "context" / "token_corpus.json"


def corpus() -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = json.loads(CORPUS.read_text(encoding="utf-8"))["samples"]
    return samples


@pytest.mark.parametrize(
    ("text", "o200k", "cl100k"),
    [
        # Token ids as tiktoken's own tests and README give them.
        ("hello world", [24912, 2375], [15339, 1917]),
        ("tiktoken is great!", [83, 8251, 2488, 382, 2212, 0], [83, 1609, 5963, 374, 2294, 0]),
    ],
)
def test_known_token_ids(text: str, o200k: list[int], cl100k: list[int]) -> None:
    assert load_encoding("o200k_base").encode(text) == o200k
    assert load_encoding("cl100k_base").encode(text) == cl100k
    assert counter_for("gpt-4o").count(text) == len(o200k)
    assert counter_for("gpt-4").count(text) == len(cl100k)


@pytest.mark.parametrize("sample", corpus(), ids=lambda s: str(s["id"]))
def test_exact_counts_on_the_corpus(sample: dict[str, Any]) -> None:
    assert counter_for("gpt-4o-mini").count(sample["text"]) == sample["o200k_base"]
    assert counter_for("gpt-3.5-turbo").count(sample["text"]) == sample["cl100k_base"]


@pytest.mark.parametrize("sample", corpus(), ids=lambda s: str(s["id"]))
def test_estimate_is_never_below_any_reference(sample: dict[str, Any]) -> None:
    estimate = counter_for("claude-sonnet-4-5").count(sample["text"])
    assert estimate >= sample["o200k_base"]
    for tokenizer, count in sample["reference"].items():
        assert estimate >= count, tokenizer


def test_estimate_headroom_figures() -> None:
    """The figures the tokens module's docstring quotes, so they stay true."""
    est = counter_for("llama3.1:8b")
    samples = corpus()
    ests = [est.count(s["text"]) for s in samples]
    worst = [max(s["reference"].values()) for s in samples]
    assert min(e / w for e, w in zip(ests, worst, strict=True)) == pytest.approx(1.038, abs=5e-4)
    assert sum(ests) / sum(worst) == pytest.approx(1.332, abs=5e-4)
    assert sum(ests) / sum(s["o200k_base"] for s in samples) == pytest.approx(2.056, abs=5e-4)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("openai/gpt-4o-mini", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("GPT-5-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-oss:20b", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("azure/gpt-35-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-sonnet-4-5", None),
        ("claude-3-5-haiku-latest", None),
        ("llama3.1:8b", None),
        ("meta-llama/Llama-3.1-8B-Instruct", None),
        ("mistral-large-latest", None),
        ("qwen2.5:7b", None),
        ("offline", None),
        ("", None),
        ("o10-nonsense", None),
        ("gpt-40", None),
    ],
)
def test_encoding_for(model: str, encoding: str | None) -> None:
    assert encoding_for(model) == encoding
    counter = counter_for(model)
    if encoding is None:
        assert isinstance(counter, EstimatedCounter)
        assert counter.name == "estimate(o200k_base*1.65)"
    else:
        assert isinstance(counter, BpeCounter)
        assert counter.name == encoding


def test_counters_are_shared_per_encoding() -> None:
    assert counter_for("gpt-4o") is counter_for("o3")
    assert counter_for("claude-opus-4") is counter_for("offline")


def test_empty_special_and_odd_texts() -> None:
    for model in ("gpt-4o", "gpt-4", "claude"):
        c = counter_for(model)
        assert c.count("") == 0
        # Special-token text is ordinary text in a chat message: counted, never refused.
        assert c.count("<|endoftext|>") >= 7
        assert c.count("lone \ud800 surrogate") > 0


def test_long_texts_are_counted_in_pieces() -> None:
    c = BpeCounter("o200k_base")
    line = "the quick brown fox jumps over the lazy dog\n"
    text = line * (3 * CHUNK_CHARS // len(line))  # ~300k characters
    assert len(text) > 2 * CHUNK_CHARS
    # Pieces are cut after a newline: the sum of the lines' counts exactly.
    assert c.count(text) == c.count(line) * (len(text) // len(line))
    # No place to cut: hard cuts every CHUNK_CHARS (bpe_openai refuses 1M characters).
    solid = "x" * (10 * CHUNK_CHARS + 7)
    assert c.count(solid) == 10 * c.count("x" * CHUNK_CHARS) + c.count("x" * 7)


@settings(max_examples=60, deadline=None, database=None)
@given(text=st.text(max_size=400), limit=st.integers(min_value=12, max_value=120))
def test_truncate_fits_and_keeps_the_head(text: str, limit: int) -> None:
    for counter in (counter_for("gpt-4o"), counter_for("claude")):
        marker = "\n[cut]"
        out, tokens = truncate_to_tokens(counter, text, limit, marker)
        assert tokens == counter.count(out)
        if counter.count(text) <= limit:
            assert out == text
        else:
            assert tokens <= limit
            assert out.endswith(marker)
            assert text.startswith(out[: -len(marker)])


def test_truncate_when_even_the_marker_does_not_fit() -> None:
    c = counter_for("gpt-4o")
    out, tokens = truncate_to_tokens(c, "word " * 100, 1, " [a long marker here]")
    assert out == " [a long marker here]"
    assert tokens > 1
