"""Extensions: optional components on the core seams (plugins, mcp, ai, skills, and Python
modules named in the ``extensions`` setting). They import core interfaces only."""
