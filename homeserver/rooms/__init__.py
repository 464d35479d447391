"""Rooms: creating and persisting events, state, membership and what users may see."""
