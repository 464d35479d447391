"""The snapshot of each room's current state, which with several forward extremities is
the result of state resolution and so cannot be derived from any one event."""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE room_heads (
            room_nid {d['bigint']} PRIMARY KEY,
            snapshot_nid {d['bigint']} NOT NULL
        )""",
    ]
