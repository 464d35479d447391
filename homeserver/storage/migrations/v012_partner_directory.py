"""The shared partner directory.

Directory side: one entry per publishing server (keyed by the X-Matrix origin
that signed the publish), its specialties and published partners as rows so
search and recommendations are indexed joins, and the operator's verifications
in their own table so they outlive a withdrawal and republication.
Publisher side: the state of our profile at each directory we publish to.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE partner_directory_entries (
            server_name TEXT PRIMARY KEY,
            profile TEXT NOT NULL,
            name_key TEXT NOT NULL,
            search_text TEXT NOT NULL,
            location_key TEXT NOT NULL,
            published_ts {d['bigint']} NOT NULL,
            updated_ts {d['bigint']} NOT NULL,
            expires_ts {d['bigint']} NOT NULL
        )""",
        "CREATE INDEX partner_directory_entries_expiry ON partner_directory_entries (expires_ts)",
        "CREATE INDEX partner_directory_entries_name ON partner_directory_entries (name_key, server_name)",
        """CREATE TABLE partner_directory_specialties (
            server_name TEXT NOT NULL,
            specialty TEXT NOT NULL,
            PRIMARY KEY (server_name, specialty)
        )""",
        "CREATE INDEX partner_directory_specialties_by ON partner_directory_specialties (specialty)",
        """CREATE TABLE partner_directory_partners (
            server_name TEXT NOT NULL,
            partner TEXT NOT NULL,
            PRIMARY KEY (server_name, partner)
        )""",
        "CREATE INDEX partner_directory_partners_by ON partner_directory_partners (partner)",
        f"""CREATE TABLE partner_directory_verifications (
            server_name TEXT PRIMARY KEY,
            verified_by TEXT NOT NULL,
            verified_ts {d['bigint']} NOT NULL,
            note TEXT
        )""",
        f"""CREATE TABLE partner_directory_publications (
            directory TEXT PRIMARY KEY,
            last_attempt_ts {d['bigint']},
            last_success_ts {d['bigint']},
            expires_ts {d['bigint']},
            verified INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            withdrawn INTEGER NOT NULL DEFAULT 0
        )""",
    ]
