"""Server-side search (the spec's "Server Side Search"): the full-text index kept in
the event writer's transaction (index.py), and POST /search over it (service.py)."""
