"""Event relationships: the relations index, /relations and /threads, and the
aggregations bundled with events served to clients (threads, edits, references)."""
