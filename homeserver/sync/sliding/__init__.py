"""Simplified sliding sync (MSC4186): request model (`config.py`), per-connection
state (`connections.py`) and the computation (`service.py`), built on the /sync
stream providers (homeserver/sync/streams/)."""
