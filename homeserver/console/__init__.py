"""The organization console: a web client of the admin and client APIs, shipped as
static files (hand-written HTML, CSS and JavaScript modules, no build step) and served
by the client listener at /_accord/console/ (homeserver/api/console.py)."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
