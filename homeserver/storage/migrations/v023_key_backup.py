"""Server-side room key backups (homeserver/e2ee/key_backup.py).

key_backup_versions: each user's backup versions; a deleted version keeps its row
(deleted = 1) so its number is never handed out again, and `etag` counts the changes
to its keys. key_backup_sessions: the backed-up session keys of each version, one per
(room, session), with the three fields the replacement rule compares and the
client's opaque `session_data`.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE key_backup_versions (
            user_id TEXT NOT NULL,
            version {d['bigint']} NOT NULL,
            algorithm TEXT NOT NULL,
            auth_data TEXT NOT NULL,
            etag {d['bigint']} NOT NULL,
            deleted INTEGER NOT NULL,
            PRIMARY KEY (user_id, version)
        )""",
        f"""CREATE TABLE key_backup_sessions (
            user_id TEXT NOT NULL,
            version {d['bigint']} NOT NULL,
            room_id TEXT NOT NULL,
            session_id TEXT NOT NULL,
            first_message_index {d['bigint']} NOT NULL,
            forwarded_count {d['bigint']} NOT NULL,
            is_verified INTEGER NOT NULL,
            session_data TEXT NOT NULL,
            PRIMARY KEY (user_id, version, room_id, session_id)
        )""",
    ]
