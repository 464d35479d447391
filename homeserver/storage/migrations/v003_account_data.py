"""Account data (global and per room), and the index that finds a room's events by time.

Global account data has room_id '' so one primary key covers both kinds.
stream_id is the account data stream position of the last change, which
/sync reads to send each client only what changed since its token.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE account_data (
            user_id TEXT NOT NULL,
            room_id TEXT NOT NULL,
            data_type TEXT NOT NULL,
            content TEXT NOT NULL,
            stream_id {d['bigint']} NOT NULL,
            PRIMARY KEY (user_id, room_id, data_type)
        )""",
        "CREATE INDEX account_data_stream ON account_data (user_id, stream_id)",
        # GET /timestamp_to_event walks a room's events in timestamp order.
        "CREATE INDEX events_room_ts ON events (room_nid, origin_server_ts)",
    ]
