"""Accounts: users, profiles, devices, tokens, registration tokens, UIA sessions."""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE users (
            user_id TEXT PRIMARY KEY,
            password_hash TEXT,
            created_ts {d['bigint']} NOT NULL,
            admin INTEGER NOT NULL DEFAULT 0,
            is_guest INTEGER NOT NULL DEFAULT 0,
            user_type TEXT,
            deactivated INTEGER NOT NULL DEFAULT 0,
            locked INTEGER NOT NULL DEFAULT 0,
            ratelimit_exempt INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE profiles (
            user_id TEXT PRIMARY KEY,
            displayname TEXT,
            avatar_url TEXT,
            fields TEXT NOT NULL DEFAULT '{}'
        )""",
        f"""CREATE TABLE devices (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            display_name TEXT,
            last_seen_ts {d['bigint']},
            last_seen_ip TEXT,
            last_seen_user_agent TEXT,
            PRIMARY KEY (user_id, device_id)
        )""",
        f"""CREATE TABLE access_tokens (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            created_ts {d['bigint']} NOT NULL,
            expires_ts {d['bigint']},
            refresh_token_hash TEXT,
            used INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id)",
        f"""CREATE TABLE refresh_tokens (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            created_ts {d['bigint']} NOT NULL,
            expires_ts {d['bigint']},
            next_token_hash TEXT
        )""",
        "CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id)",
        f"""CREATE TABLE registration_tokens (
            token TEXT PRIMARY KEY,
            uses_allowed INTEGER,
            pending INTEGER NOT NULL DEFAULT 0,
            completed INTEGER NOT NULL DEFAULT 0,
            expiry_time {d['bigint']}
        )""",
        f"""CREATE TABLE uia_sessions (
            session_id TEXT PRIMARY KEY,
            created_ts {d['bigint']} NOT NULL,
            uri TEXT NOT NULL,
            method TEXT NOT NULL,
            completed TEXT NOT NULL,
            params TEXT NOT NULL
        )""",
    ]
