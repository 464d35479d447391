"""Redactions received before the event they redact: such a redaction is held
(accepted into the DAG, not shown to clients) until its target arrives, and is
then checked and applied (the spec's "Handling redactions").

pending_redactions: the redaction (by nid) waiting for each target event ID.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE pending_redactions (
            target_event_id TEXT NOT NULL,
            redaction_nid {d['bigint']} NOT NULL,
            room_nid {d['bigint']} NOT NULL,
            PRIMARY KEY (target_event_id, redaction_nid)
        )""",
    ]
