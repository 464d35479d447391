"""Records: the plain dataclasses that stores return and services and routes pass around.

They live outside `homeserver.storage` so that a route can name a record without
depending on the store that reads it. A record module imports nothing of the
application (import-linter holds it below the stores).
"""
