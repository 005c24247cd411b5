"""Golden tests of context assembly: a fixed request in, the exact prompt and trace out.

Each ``tests/golden/context/assemble_*.json`` holds a request, the model whose counter
applies, and the expected ``messages`` and ``trace``. When a change to the output is
intended, regenerate them and review the diff:

    NEXUS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_context_golden.py
    git diff tests/golden/context/
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from nexus.core.context import (
    Budget,
    ContextRequest,
    LogEntry,
    RetrievedItem,
    Summary,
    ToolResult,
    assemble,
    counter_for,
)

GOLDEN = Path(__file__).parents[1] / "golden" / "context"
UPDATE = os.environ.get("NEXUS_UPDATE_GOLDEN") == "1"
CASES = sorted(GOLDEN.glob("assemble_*.json"))


def request_from(data: dict[str, Any]) -> ContextRequest:
    return ContextRequest(
        agent_id=data["agent_id"],
        system=data["system"],
        current=LogEntry(**data["current"]),
        budget=Budget(**data["budget"]),
        log=tuple(LogEntry(**e) for e in data.get("log", ())),
        pinned=tuple(data.get("pinned", ())),
        summaries=tuple(Summary(**s) for s in data.get("summaries", ())),
        retrieved=tuple(RetrievedItem(**r) for r in data.get("retrieved", ())),
        tool_results=tuple(ToolResult(**t) for t in data.get("tool_results", ())),
        room=data.get("room", ""),
    )


def output_of(case: dict[str, Any]) -> dict[str, Any]:
    result = assemble(request_from(case["request"]), counter_for(case["model"]))
    return {
        "messages": [m.as_dict() for m in result.messages],
        "trace": result.trace.as_dict(),
    }


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 5


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    got = output_of(case)
    if UPDATE:
        case["expected"] = got
        path.write_text(json.dumps(case, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return
    assert case["expected"] is not None, f"run with NEXUS_UPDATE_GOLDEN=1 to fill {path.name}"
    assert got["messages"] == case["expected"]["messages"]
    assert got["trace"] == case["expected"]["trace"]
    # Byte-identical when serialised again.
    assert json.dumps(got, ensure_ascii=False) == json.dumps(case["expected"], ensure_ascii=False)
