"""What we still have to tell partner servers (our answers to their requests and
our revokes), so that a restart does not forget it while the peer is down.

partnership_deliveries: one row per message to a peer, in the order our side
made the changes (seq); the row is written in the same transaction as the
change it announces and deleted once the peer took it (or refused it for good).
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE partnership_deliveries (
            seq {d['bigint_pk']},
            server_name TEXT NOT NULL,
            verb TEXT NOT NULL,
            request_id TEXT NOT NULL,
            body TEXT NOT NULL,
            created_ts {d['bigint']} NOT NULL
        )""",
        "CREATE INDEX partnership_deliveries_server ON partnership_deliveries (server_name, seq)",
    ]
