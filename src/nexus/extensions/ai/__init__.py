"""AI agents: model providers (one small streaming interface), the agent runtime (an
observer on the write path), tools. See docs/agents.md."""
