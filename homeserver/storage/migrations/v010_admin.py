"""Administration: the audit log of security-relevant actions (and, added with the
admin API, what it needs)."""


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
    ]
