"""Read receipts, the last known presence of local users, and stored sync filters.

receipts: one row per (room, user, receipt type, thread); thread_id is '' for
unthreaded receipts so one primary key covers both. event_stream_ordering is the
acknowledged event's position, so a receipt never moves backwards and unread
counts compare against it without loading the event; stream_id is the receipt
stream position of the last change, which /sync reads.

presence: each local user's last state, so it survives a restart; written in
batches, so last_active_ts may trail the in-memory value by a few seconds.

user_filters: filter definitions as uploaded. filter_hash (of the canonical JSON)
lets re-uploads of the same definition, which clients do at every start, return
the existing ID instead of piling up rows; an index over the JSON itself could
exceed PostgreSQL's index row size for long room lists.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE receipts (
            room_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            receipt_type TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            event_stream_ordering {d['bigint']} NOT NULL,
            ts {d['bigint']} NOT NULL,
            stream_id {d['bigint']} NOT NULL,
            PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
        )""",
        "CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id)",
        f"""CREATE TABLE presence (
            user_id TEXT NOT NULL PRIMARY KEY,
            state TEXT NOT NULL,
            status_msg TEXT,
            last_active_ts {d['bigint']} NOT NULL,
            stream_id {d['bigint']} NOT NULL
        )""",
        f"""CREATE TABLE user_filters (
            filter_id {d['bigint_pk']},
            user_id TEXT NOT NULL,
            filter_hash TEXT NOT NULL,
            filter_json TEXT NOT NULL,
            UNIQUE (user_id, filter_hash)
        )""",
    ]
