"""Administration: the audit log of security-relevant actions, and what the admin API keeps.

event_reports / room_reports: what users reported (the spec's reporting module), for
admins to review. Rooms are named by ID, not nid: a report must stay readable after
the room's events are gone, unless the admin purges the room itself.

ratelimit_overrides: an admin's per-user message rate (Synapse's override_ratelimit).
0/0 ("never limit") is not stored here but as users.ratelimit_exempt, so exemption
has exactly one home whichever way it was granted.

blocked_rooms: rooms no local user may join or be invited to, even ones this server
does not know yet.

erased_users: accounts deactivated with "erase" (GDPR erasure requested), as the admin
API reports them.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE audit_log (
            id {d['bigint_pk']},
            ts {d['bigint']} NOT NULL,
            action TEXT NOT NULL,
            actor TEXT,
            target TEXT,
            ip TEXT,
            outcome TEXT NOT NULL,
            details TEXT NOT NULL
        )""",
        "CREATE INDEX audit_log_ts ON audit_log (ts)",
        "CREATE INDEX audit_log_action ON audit_log (action, ts)",
        "CREATE INDEX audit_log_actor ON audit_log (actor, ts)",
        f"""CREATE TABLE event_reports (
            id {d['bigint_pk']},
            received_ts {d['bigint']} NOT NULL,
            room_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            reason TEXT,
            score INTEGER,
            sender TEXT NOT NULL
        )""",
        "CREATE INDEX event_reports_room ON event_reports (room_id)",
        f"""CREATE TABLE room_reports (
            id {d['bigint_pk']},
            received_ts {d['bigint']} NOT NULL,
            room_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE INDEX room_reports_room ON room_reports (room_id)",
        """CREATE TABLE ratelimit_overrides (
            user_id TEXT PRIMARY KEY,
            messages_per_second INTEGER NOT NULL,
            burst_count INTEGER NOT NULL
        )""",
        f"""CREATE TABLE blocked_rooms (
            room_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            ts {d['bigint']} NOT NULL
        )""",
        f"""CREATE TABLE erased_users (
            user_id TEXT PRIMARY KEY,
            ts {d['bigint']} NOT NULL
        )""",
    ]
