"""Rooms: events with compact integer IDs, layered state snapshots, current state,
memberships, the global event stream, aliases and the room directory."""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE rooms (
            room_nid {d['bigint_pk']},
            room_id TEXT NOT NULL UNIQUE,
            room_version TEXT NOT NULL,
            creator TEXT NOT NULL,
            federate INTEGER NOT NULL DEFAULT 1,
            created_ts {d['bigint']} NOT NULL,
            published INTEGER NOT NULL DEFAULT 0
        )""",
        f"""CREATE TABLE state_keys (
            state_key_nid {d['bigint_pk']},
            event_type TEXT NOT NULL,
            state_key TEXT NOT NULL,
            UNIQUE (event_type, state_key)
        )""",
        # state_before / state_after name snapshots; a non-state event shares its
        # parent's snapshot, so snapshots grow with state changes, not with events.
        f"""CREATE TABLE events (
            event_nid {d['bigint_pk']},
            event_id TEXT NOT NULL UNIQUE,
            room_nid {d['bigint']} NOT NULL,
            stream_ordering {d['bigint']} UNIQUE,
            depth {d['bigint']} NOT NULL,
            event_type TEXT NOT NULL,
            state_key_nid {d['bigint']},
            sender TEXT NOT NULL,
            origin_server_ts {d['bigint']} NOT NULL,
            state_before {d['bigint']},
            state_after {d['bigint']},
            outlier INTEGER NOT NULL DEFAULT 0,
            rejected TEXT,
            redacted_by TEXT,
            txn_device TEXT,
            txn_id TEXT,
            json TEXT NOT NULL
        )""",
        "CREATE INDEX events_room_stream ON events (room_nid, stream_ordering)",
        f"""CREATE TABLE event_txns (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            txn_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            created_ts {d['bigint']} NOT NULL,
            PRIMARY KEY (user_id, device_id, txn_id)
        )""",
        f"""CREATE TABLE forward_extremities (
            room_nid {d['bigint']} NOT NULL,
            event_nid {d['bigint']} NOT NULL,
            PRIMARY KEY (room_nid, event_nid)
        )""",
        f"""CREATE TABLE state_snapshots (
            snapshot_nid {d['bigint_pk']},
            room_nid {d['bigint']} NOT NULL,
            parent_nid {d['bigint']},
            chain_len INTEGER NOT NULL
        )""",
        # A delta row with event_nid NULL removes that key from the parent's state.
        f"""CREATE TABLE state_deltas (
            snapshot_nid {d['bigint']} NOT NULL,
            state_key_nid {d['bigint']} NOT NULL,
            event_nid {d['bigint']},
            PRIMARY KEY (snapshot_nid, state_key_nid)
        )""",
        f"""CREATE TABLE current_state (
            room_nid {d['bigint']} NOT NULL,
            state_key_nid {d['bigint']} NOT NULL,
            event_nid {d['bigint']} NOT NULL,
            PRIMARY KEY (room_nid, state_key_nid)
        )""",
        f"""CREATE TABLE memberships (
            room_nid {d['bigint']} NOT NULL,
            user_id TEXT NOT NULL,
            membership TEXT NOT NULL,
            event_nid {d['bigint']} NOT NULL,
            stream_ordering {d['bigint']} NOT NULL,
            forgotten INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (room_nid, user_id)
        )""",
        "CREATE INDEX memberships_user ON memberships (user_id, membership)",
        f"""CREATE TABLE room_aliases (
            alias TEXT PRIMARY KEY,
            room_id TEXT NOT NULL,
            creator TEXT NOT NULL,
            created_ts {d['bigint']} NOT NULL
        )""",
        "CREATE INDEX room_aliases_room ON room_aliases (room_id)",
    ]
