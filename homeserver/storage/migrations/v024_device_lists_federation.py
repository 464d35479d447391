"""Device lists across servers (homeserver/e2ee/remote_keys.py, homeserver/e2ee/edus.py).

remote_device_lists / remote_device_list_state: the cached device lists of other
servers' users who share a room with one of ours: each device's keys as their
server published them, and per user the m.device_list_update stream IDs seen
recently (`seen`, a JSON list: an update whose prev_id is not among them reveals a
gap, and the list is fetched again), the master and self-signing keys, and whether
the copy is complete (`up_to_date`). Dropped when no local user shares a room with
the user any more.

device_list_announced / device_list_outbound: what this server last told other
servers of each local user's devices (a digest per device, so a change is sent as
the devices it touched), and the stream ID of the last m.device_list_update sent
for the user (the next one's prev_id).
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        """CREATE TABLE remote_device_lists (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            keys_json TEXT,
            display_name TEXT,
            PRIMARY KEY (user_id, device_id)
        )""",
        f"""CREATE TABLE remote_device_list_state (
            user_id TEXT PRIMARY KEY,
            stream_id {d['bigint']} NOT NULL,
            seen TEXT NOT NULL,
            master_key TEXT,
            self_signing_key TEXT,
            up_to_date INTEGER NOT NULL
        )""",
        """CREATE TABLE device_list_announced (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            digest TEXT NOT NULL,
            PRIMARY KEY (user_id, device_id)
        )""",
        f"""CREATE TABLE device_list_outbound (
            user_id TEXT PRIMARY KEY,
            stream_id {d['bigint']} NOT NULL
        )""",
    ]
