"""Push rules: the rules a user defined, and their changes to the server-default rules.

push_rules: one row per user-defined rule. `position` orders a user's rules of
one kind, lowest first (most important first), and is rewritten when a rule is
placed with before/after; conditions (override/underride) and pattern (content)
are NULL where the kind has none; JSON columns hold exactly what was validated.

push_rule_defaults: a user's changes to a server-default rule (enabled and/or
actions; NULL means "as the server defines it"). Keyed by rule ID alone, not
kind, so an override still applies if a later spec moves a default rule to
another kind; the rule definitions themselves are never stored, so a server
upgrade that changes them reaches every user at once.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE push_rules (
            user_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            position {d['bigint']} NOT NULL,
            conditions TEXT,
            pattern TEXT,
            actions TEXT NOT NULL,
            enabled INTEGER NOT NULL,
            PRIMARY KEY (user_id, kind, rule_id)
        )""",
        """CREATE TABLE push_rule_defaults (
            user_id TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            enabled INTEGER,
            actions TEXT,
            PRIMARY KEY (user_id, rule_id)
        )""",
    ]
