"""To-device messages and the device-list stream.

`device_inbox` holds each to-device message per recipient device until that
device's next /sync acknowledges it; `to_device_txns` remembers each sender
device's transaction IDs so a retransmitted PUT is not delivered twice.
`device_list_changes` is the append-only stream of users whose devices or keys
changed (room_id NULL), and of membership changes in rooms (room_id set; user_id
"" when the room itself became encrypted), which change who must track whose
devices. `e2ee_stream_positions` keeps each stream's highest position handed
out, since acknowledged inbox rows are deleted and the highest row left is no
measure of the positions clients' tokens already hold.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE device_inbox (
            stream_id {d['bigint']} NOT NULL,
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            event_type TEXT NOT NULL,
            content TEXT NOT NULL,
            PRIMARY KEY (user_id, device_id, stream_id)
        )""",
        f"""CREATE TABLE to_device_txns (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            txn_id TEXT NOT NULL,
            ts {d['bigint']} NOT NULL,
            PRIMARY KEY (user_id, device_id, txn_id)
        )""",
        f"""CREATE TABLE device_list_changes (
            stream_id {d['bigint']} NOT NULL PRIMARY KEY,
            user_id TEXT NOT NULL,
            room_id TEXT
        )""",
        "CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id)",
        f"""CREATE TABLE e2ee_stream_positions (
            stream TEXT PRIMARY KEY,
            pos {d['bigint']} NOT NULL
        )""",
    ]
