"""The full-text index of room events that /search reads (homeserver/search/).

One row per timeline event with searchable text (an m.room.message body, an
m.room.name name, an m.room.topic topic), keyed by the event's nid, written and
removed (on redaction) in the event's own write transaction. The engines index
differently, so this migration branches on the dialect's engine:

- SQLite: an FTS5 table whose rowid is the event nid, tokenized with Porter
  stemming over unicode61 (case and diacritics folded); ranked with bm25.
- PostgreSQL: a tsvector (the 'english' configuration: stemmed, stop words
  dropped) per event nid under a GIN index; ranked with ts_rank.
"""


def statements(d: dict[str, str]) -> list[str]:
    if d["engine"] == "postgres":
        return [
            f"""CREATE TABLE event_search (
                event_nid {d['bigint']} PRIMARY KEY,
                vector tsvector NOT NULL
            )""",
            "CREATE INDEX event_search_vector ON event_search USING GIN (vector)",
        ]
    return [
        "CREATE VIRTUAL TABLE event_search USING fts5("
        "value, tokenize = 'porter unicode61 remove_diacritics 2')",
    ]
