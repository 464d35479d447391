"""Other servers' signing keys, as fetched directly or through notaries.

server_keys: one row per (server, key ID). valid_until_ts is how long the key
may be used: a current key's (capped) valid_until_ts, or an old key's
expired_ts; it only ever grows, so a stale notary answer cannot shorten what a
fresher direct fetch established. verify_key is the unpadded base64 public key.

server_key_responses: the latest self-signed key response per server, kept
verbatim so this server can answer notary queries for it (with its own
signature added) even while that server is unreachable.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE server_keys (
            server_name TEXT NOT NULL,
            key_id TEXT NOT NULL,
            verify_key TEXT NOT NULL,
            valid_until_ts {d['bigint']} NOT NULL,
            expired_ts {d['bigint']},
            fetched_ts {d['bigint']} NOT NULL,
            source TEXT NOT NULL,
            PRIMARY KEY (server_name, key_id)
        )""",
        f"""CREATE TABLE server_key_responses (
            server_name TEXT NOT NULL PRIMARY KEY,
            valid_until_ts {d['bigint']} NOT NULL,
            fetched_ts {d['bigint']} NOT NULL,
            response_json TEXT NOT NULL
        )""",
    ]
