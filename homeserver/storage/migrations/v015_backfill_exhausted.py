"""Rooms whose older history the other servers said they do not have, so that a
restart does not send every client that pages back to the top of such a room
asking all of them again.

backfill_exhausted: per room, a digest of the backward extremities no server
could extend and when that was found; it only counts while the room's
extremities are still those (a backfill that got further changes them).
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE backfill_exhausted (
            room_nid {d['bigint']} PRIMARY KEY,
            extremities TEXT NOT NULL,
            found_ts {d['bigint']} NOT NULL
        )""",
    ]
