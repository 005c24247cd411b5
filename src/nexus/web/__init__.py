"""The web app's static files (HTML, CSS, ES modules): no Python besides this locator.

``nexus.js`` in ``static/`` is the JavaScript client (also ``clients/js/nexus.js``); the
app itself needs no build step. ``nexus.api.web`` serves this folder.
"""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
