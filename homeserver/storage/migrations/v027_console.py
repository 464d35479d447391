"""What the organization console reads that the server did not keep before.

organization_profile: our organization's directory profile as edited at run time (one
row; `source` is 'config' while it is the config's seed, 'edited' once an admin changed
it, after which the config no longer overrides it).

analytics_daily: daily rollups, one row per (UTC day number, metric, dimension), added
to by the event writer's transaction (messages), the federation sender (response
times) and the partnerships service (the active partner count, a gauge).
analytics_active_users: the local users who sent something on each day.

federation_destinations: each destination's delivery state as the sender last saw it
(Synapse's `destinations` table, plus what the console shows), flushed periodically.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE organization_profile (
            id INTEGER PRIMARY KEY,
            profile_json TEXT NOT NULL,
            source TEXT NOT NULL,
            updated_ts {d['bigint']} NOT NULL,
            updated_by TEXT
        )""",
        f"""CREATE TABLE analytics_daily (
            day {d['bigint']} NOT NULL,
            metric TEXT NOT NULL,
            dim TEXT NOT NULL,
            value {d['bigint']} NOT NULL,
            PRIMARY KEY (day, metric, dim)
        )""",
        f"""CREATE TABLE analytics_active_users (
            day {d['bigint']} NOT NULL,
            user_id TEXT NOT NULL,
            PRIMARY KEY (day, user_id)
        )""",
        f"""CREATE TABLE federation_destinations (
            destination TEXT PRIMARY KEY,
            last_success_ts {d['bigint']},
            failure_ts {d['bigint']},
            retry_last_ts {d['bigint']},
            retry_interval_ms {d['bigint']} NOT NULL,
            failures {d['bigint']} NOT NULL,
            last_error TEXT,
            refusals {d['bigint']} NOT NULL,
            last_refusal_ts {d['bigint']}
        )""",
    ]
