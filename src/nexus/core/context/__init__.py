"""Context assembly for agents: what a model sees of a room, within its token budget.

``assemble(request, counter)`` is a pure function: a ``ContextRequest`` (the room's recent
log, the triggering entry, the system prompt, pinned blocks, summaries, retrieved
memories, the turn's tool results, the budget) in; an ``Assembly`` (prompt messages and a
``Trace``) out. Same input, same bytes out.

How the budget is spent
-----------------------
The model's window holds prompt and reply: ``max_output_tokens`` are kept for the reply
and ``margin`` (default 64) for counting error; the prompt may use the rest
(``input_limit``). In that, in order:

1. the system prompt, whole; 2. the current turn, whole or cut to what is left (never
   below ``min_current_tokens`` of its text, default 256); 3. pinned blocks, whole, each
   if it fits;
4. this turn's tool results (each call always gets an answer: the result, a cut result or
   a stub), at least ``tool_share`` (50%) of what is left when the conversation competes;
5. summaries, newest range first; 6. retrieved memories by score, within
   ``retrieved_share`` (20%) of what is left; 7. the recent log, newest first, until an
   entry does not fit: the oldest are dropped, entries covered by an included summary are
   left out as covered.

Only the minimum — system prompt + current turn cut to ``min_current_tokens`` + tool call
stubs — may exceed ``input_limit``; the trace then says ``over_budget`` and nothing else is
included (the runtime may refuse to send it: the agent's system prompt is too long for its
model).

Other people's messages are user messages ``[#seq] sender: text``, the agent's own are
assistant messages; consecutive messages of one role are merged, summaries and memories
open the conversation as a user message, so roles alternate from a user message on
(valid for OpenAI, Anthropic and strict chat templates alike).

What the trace says
-------------------
One ``TraceItem`` per candidate — the system prompt, each pinned block, the current turn,
each tool result, summary, memory and log entry, and the opener line when one was needed —
with its section, a reference (``#12``, ``#1-#40``, a memory or tool call id), whether it
went in, why ("fits", "over budget", "covered by summary #1-#40", "deleted",
"over the retrieved share (...)", "cut to 900 of 5000 tokens", ...), its tokens (charged,
or what it would have cost) and the index of the message holding it. Per section: items
in and out and their tokens. Overall: the counter used, the budget, ``used`` (the sum of
the charges) and ``prompt_tokens`` (the built prompt counted again; never more than
``used``).

Which tokenizer
---------------
``counter_for(model)``: exact ``o200k_base`` counts for gpt-4o, gpt-4.1, gpt-4.5, gpt-5,
o1/o3/o4 and gpt-oss; exact ``cl100k_base`` for gpt-4 and gpt-3.5; for every other model
(Claude, Llama, Mistral, Qwen, the offline provider, unknown names) an estimate from the
o200k count and the text's scripts that was never below the real count of seven
tokenizers on the calibration corpus (figures in ``tokens``). Each message is charged 4
tokens of framing, the reply 3, each tool call 8 plus its id, name and arguments.
"""

from .assemble import ContextRequest, assemble, prompt_tokens
from .model import (
    Assembly,
    Budget,
    LogEntry,
    PromptMessage,
    PromptToolCall,
    RetrievedItem,
    SectionTotal,
    ToolResult,
    Trace,
    TraceItem,
)
from .summaries import Chunk, SummarizeFn, Summarizer, Summary, SummaryPolicy, next_chunk
from .tokens import (
    BpeCounter,
    EstimatedCounter,
    TokenCounter,
    counter_for,
    encoding_for,
    truncate_to_tokens,
)

__all__ = [
    "Assembly",
    "BpeCounter",
    "Budget",
    "Chunk",
    "ContextRequest",
    "EstimatedCounter",
    "LogEntry",
    "PromptMessage",
    "PromptToolCall",
    "RetrievedItem",
    "SectionTotal",
    "SummarizeFn",
    "Summarizer",
    "Summary",
    "SummaryPolicy",
    "TokenCounter",
    "ToolResult",
    "Trace",
    "TraceItem",
    "assemble",
    "counter_for",
    "encoding_for",
    "next_chunk",
    "prompt_tokens",
    "truncate_to_tokens",
]
