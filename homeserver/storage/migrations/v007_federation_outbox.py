"""The outbound federation queue, so what was meant for another server survives a restart.

federation_outbox: one row per (destination, item) still to be delivered, in the
order it was queued (seq, global and increasing, so ordering per destination
falls out of it). A PDU is stored by event ID (the event itself is in the events
table and is loaded when its transaction is built); a durable EDU (read
receipts) is stored as its JSON. Rows are deleted once a transaction carrying
them is accepted (or refused for good) by the destination.

federation_sender: a single row whose epoch is bumped at every start. Transaction
IDs are "<epoch>.<counter>", unique per destination across restarts without a
write per transaction, and never reused with different content (a receiver
dedupes by transaction ID, so a reuse would silently lose items).
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE federation_outbox (
            seq {d['bigint_pk']},
            destination TEXT NOT NULL,
            kind TEXT NOT NULL,
            event_id TEXT,
            edu_json TEXT
        )""",
        "CREATE INDEX federation_outbox_destination ON federation_outbox (destination, kind, seq)",
        f"CREATE TABLE federation_sender (epoch {d['bigint']} NOT NULL)",
        "INSERT INTO federation_sender (epoch) VALUES (0)",
    ]
