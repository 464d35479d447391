"""The stripped state that comes with a membership in a room this server is not in
(an invite from another server, or our knock on a remote room): the only view of
that room there is until someone here joins it."""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE invite_state (
            event_nid {d['bigint']} PRIMARY KEY,
            stripped TEXT NOT NULL
        )""",
    ]
