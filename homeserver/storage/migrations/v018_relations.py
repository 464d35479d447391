"""Event relationships (m.relates_to): one row per timeline event that relates to
another, kept by the event writer in the event's own transaction and removed when
the relating event is redacted (homeserver/relations/index.py).

relates_to_id is the parent event (it may not be known here yet); stream_ordering
is the relating event's timeline position, which orders /relations and /threads.
"""


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
    ]
