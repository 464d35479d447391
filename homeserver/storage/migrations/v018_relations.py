"""Event relationships (m.relates_to): one row per timeline event that relates to
another, kept by the event writer in the event's own transaction and removed when
the relating event is redacted (homeserver/relations/index.py).

relates_to_id is the parent event (it may not be known here yet); stream_ordering
is the relating event's timeline position, which orders /relations and /threads.
Timeline events stored before this migration are indexed by it.
"""

_COLUMNS = "event_id, room_nid, relates_to_id, rel_type, event_type, sender, stream_ordering"
# What the index keeps (homeserver/relations/service.py, relation_of): timeline events,
# neither rejected nor redacted, whose m.relates_to names a rel_type and another event.
_TIMELINE = "stream_ordering IS NOT NULL AND rejected IS NULL AND redacted_by IS NULL AND outlier = 0"


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE event_relations (
            event_id TEXT NOT NULL PRIMARY KEY,
            room_nid {d['bigint']} NOT NULL,
            relates_to_id TEXT NOT NULL,
            rel_type TEXT NOT NULL,
            event_type TEXT NOT NULL,
            sender TEXT NOT NULL,
            stream_ordering {d['bigint']} NOT NULL
        )""",
        "CREATE INDEX event_relations_parent ON event_relations (relates_to_id, rel_type, stream_ordering)",
        "CREATE INDEX event_relations_threads ON event_relations (room_nid, rel_type, stream_ordering)",
        *populate(d),
    ]


def populate(d: dict[str, str]) -> list[str]:
    """Index the events already stored (run on an empty index)."""
    if d["blob"] == "BYTEA":  # PostgreSQL
        rel = "((json::json -> 'content') -> 'm.relates_to')"
        return [
            f"""INSERT INTO event_relations ({_COLUMNS})
            SELECT event_id, room_nid, parent, rel_type, event_type, sender, stream_ordering FROM (
                SELECT event_id, room_nid, event_type, sender, stream_ordering,
                    CASE WHEN json_typeof({rel} -> 'event_id') = 'string' THEN {rel} ->> 'event_id' END AS parent,
                    CASE WHEN json_typeof({rel} -> 'rel_type') = 'string' THEN {rel} ->> 'rel_type' END AS rel_type
                FROM events WHERE {_TIMELINE} AND json LIKE '%m.relates_to%'
            ) AS r WHERE parent IS NOT NULL AND parent <> '' AND parent <> event_id
                AND rel_type IS NOT NULL AND rel_type <> ''
            ON CONFLICT (event_id) DO NOTHING"""
        ]
    path = """'$.content."m.relates_to".'"""
    return [
        f"""INSERT INTO event_relations ({_COLUMNS})
        SELECT event_id, room_nid, parent, rel_type, event_type, sender, stream_ordering FROM (
            SELECT event_id, room_nid, event_type, sender, stream_ordering,
                CASE WHEN json_type(json, {path} || 'event_id') = 'text'
                    THEN json_extract(json, {path} || 'event_id') END AS parent,
                CASE WHEN json_type(json, {path} || 'rel_type') = 'text'
                    THEN json_extract(json, {path} || 'rel_type') END AS rel_type
            FROM events WHERE {_TIMELINE} AND json LIKE '%m.relates_to%'
        ) WHERE parent IS NOT NULL AND parent <> '' AND parent <> event_id
            AND rel_type IS NOT NULL AND rel_type <> ''
        ON CONFLICT (event_id) DO NOTHING"""
    ]
