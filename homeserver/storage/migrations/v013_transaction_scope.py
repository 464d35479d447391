"""Client transaction IDs are idempotency keys for one endpoint and its parameters,
not for the whole device: the same txnId sent to another room, with another event
type, or to /redact is a new request. `scope` names the endpoint and parameters
(see `homeserver.rooms.persist.ClientTxn`).

Earlier rows were all sends: their scope is rebuilt from the event they made, so
a retransmission that straddles the upgrade is still recognised.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE event_txns_scoped (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            scope TEXT NOT NULL,
            txn_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            created_ts {d['bigint']} NOT NULL,
            PRIMARY KEY (user_id, device_id, scope, txn_id)
        )""",
        """INSERT INTO event_txns_scoped (user_id, device_id, scope, txn_id, event_id, created_ts)
            SELECT t.user_id, t.device_id,
                   'send ' || COALESCE(r.room_id, '') || ' ' || COALESCE(e.event_type, ''),
                   t.txn_id, t.event_id, t.created_ts
            FROM event_txns t
            LEFT JOIN events e ON e.event_id = t.event_id
            LEFT JOIN rooms r ON r.room_nid = e.room_nid""",
        "DROP TABLE event_txns",
        "ALTER TABLE event_txns_scoped RENAME TO event_txns",
    ]
