"""Short-lived login tokens (POST /login/get_token, m.login.token at /login).

Only the token's hash is stored; a token is deleted when it is used, and expired
ones when the next token is made.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE login_tokens (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            expires_ts {d['bigint']} NOT NULL
        )""",
        "CREATE INDEX login_tokens_expiry ON login_tokens (expires_ts)",
    ]
