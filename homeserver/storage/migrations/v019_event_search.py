"""The full-text index of room events that /search reads (homeserver/search/).

One row per timeline event with searchable text (an m.room.message body, an
m.room.name name, an m.room.topic topic), keyed by the event's nid, written and
removed (on redaction) in the event's own write transaction. The engines index
differently, so this migration branches on the dialect's engine:

- SQLite: an FTS5 table whose rowid (and event_nid column) is the event nid, tokenized with Porter
  stemming over unicode61 (case and diacritics folded); ranked with bm25.
- PostgreSQL: a tsvector (the 'english' configuration: stemmed, stop words
  dropped) per event nid under a GIN index; ranked with ts_rank.
"""


# Timeline events written before this migration, indexed by it (the topic's
# m.topic representations only from then on).
_INDEXED = (
    "event_type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND stream_ordering IS NOT NULL"
    " AND rejected IS NULL AND redacted_by IS NULL AND (state_key_nid IS NULL) = (event_type = 'm.room.message')"
)


def statements(d: dict[str, str]) -> list[str]:
    if d["engine"] == "postgres":
        return [
            f"""CREATE TABLE event_search (
                event_nid {d['bigint']} PRIMARY KEY,
                vector tsvector NOT NULL
            )""",
            "CREATE INDEX event_search_vector ON event_search USING GIN (vector)",
            *populate(d),
        ]
    return [
        # event_nid repeats the rowid as a column, so a room's purge (storage/admin_rooms.py,
        # which deletes by column) finds the room's rows.
        "CREATE VIRTUAL TABLE event_search USING fts5("
        "value, event_nid UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2')",
        *populate(d),
    ]


def populate(d: dict[str, str]) -> list[str]:
    """Index the events already stored (run on an empty index). NUL cannot be text in
    PostgreSQL and ends a string in SQLite's JSON functions: the (rare) events whose
    JSON escapes one are left out rather than fail the migration or be cut short."""
    if d["engine"] == "postgres":
        return [
            f"""INSERT INTO event_search (event_nid, vector)
            SELECT event_nid, to_tsvector('english', value) FROM (
                SELECT event_nid, (json::json -> 'content') ->> (CASE event_type
                    WHEN 'm.room.message' THEN 'body' WHEN 'm.room.name' THEN 'name' ELSE 'topic' END) AS value,
                json_typeof((json::json -> 'content') -> (CASE event_type
                    WHEN 'm.room.message' THEN 'body' WHEN 'm.room.name' THEN 'name' ELSE 'topic' END)) AS kind
                FROM events WHERE {_INDEXED} AND strpos(json, '\\u0000') = 0
            ) found WHERE kind = 'string' AND trim(value) <> ''""",
        ]
    return [
        f"""INSERT INTO event_search (rowid, value, event_nid)
        SELECT event_nid, value, event_nid FROM (
            SELECT event_nid, json_extract(json, CASE event_type WHEN 'm.room.message' THEN '$.content.body'
                WHEN 'm.room.name' THEN '$.content.name' ELSE '$.content.topic' END) AS value
            FROM events WHERE {_INDEXED} AND instr(json, '\\u0000') = 0
        ) WHERE typeof(value) = 'text' AND trim(value) <> ''""",
    ]
