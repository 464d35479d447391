"""Organizations and partners: the partnership with each peer server, the request
IDs each peer has used (so a replayed request is recognised), and the small
settings the partner service keeps (its server notice room)."""


def statements(d: dict[str, str]) -> list[str]:
    return [
        # One row per peer server: the current relationship. `request_id` is the
        # request that made it; `alt_request_id` the peer's own request when both
        # sides asked at once (either ID then names the partnership).
        f"""CREATE TABLE partnerships (
            server_name TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            direction TEXT NOT NULL,
            request_id TEXT NOT NULL,
            alt_request_id TEXT,
            organization TEXT,
            message TEXT,
            requested_by TEXT,
            created_ts {d['bigint']} NOT NULL,
            updated_ts {d['bigint']} NOT NULL,
            updated_by TEXT
        )""",
        "CREATE INDEX partnerships_state ON partnerships (state)",
        f"""CREATE TABLE partnership_request_ids (
            server_name TEXT NOT NULL,
            request_id TEXT NOT NULL,
            received_ts {d['bigint']} NOT NULL,
            PRIMARY KEY (server_name, request_id)
        )""",
        """CREATE TABLE partner_settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
    ]
