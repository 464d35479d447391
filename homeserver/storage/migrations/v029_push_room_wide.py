"""Room-wide push actions: one row per event for everyone the common answer notifies.

A message to a room of thousands on the server's default rules used to write one
`event_push_actions` row per member it notified. Now (homeserver/push/actions.py):

- `event_push_room` holds one row per event for the members whose answer is the
  rules' common evaluation: the event's room, stream position, nid, thread,
  highlight, actions, time, and its sender (never notified by it).
- `event_push_actions` keeps the per-user rows, now also as exceptions: a user
  evaluated one by one (named by the event, own rules, an ignore list) whose own
  answer does not notify while the room-wide row does gets a row with notify = 0,
  which hides the room-wide row from them. Rows from before this migration keep
  notify = 1 and stay valid as they are.
- `local_member_spans` says whom a room-wide row applies to: the local users
  joined at its position, as spans (joined at, left at or NULL) of stream
  positions; a row at position S applies when joined_at < S and (left_at IS NULL
  or S < left_at). Kept by RoomStore.set_membership in the event's transaction;
  filled here from the current joins of local users (those with an account).
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        "ALTER TABLE event_push_actions ADD COLUMN notify INTEGER NOT NULL DEFAULT 1",
        f"""CREATE TABLE event_push_room (
            room_nid {d['bigint']} NOT NULL,
            stream_ordering {d['bigint']} NOT NULL,
            event_nid {d['bigint']} NOT NULL,
            sender TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            highlight INTEGER NOT NULL,
            actions TEXT NOT NULL,
            ts {d['bigint']} NOT NULL,
            PRIMARY KEY (room_nid, stream_ordering)
        )""",
        "CREATE INDEX event_push_room_event ON event_push_room (event_nid)",
        f"""CREATE TABLE local_member_spans (
            user_id TEXT NOT NULL,
            room_nid {d['bigint']} NOT NULL,
            joined_at {d['bigint']} NOT NULL,
            left_at {d['bigint']},
            PRIMARY KEY (user_id, room_nid, joined_at)
        )""",
        "CREATE INDEX local_member_spans_room ON local_member_spans (room_nid, joined_at)",
        *populate(d),
    ]


def populate(d: dict[str, str]) -> list[str]:
    """The spans of the local users joined now (run on an empty table)."""
    return [
        """INSERT INTO local_member_spans (user_id, room_nid, joined_at, left_at)
        SELECT m.user_id, m.room_nid, m.stream_ordering, NULL FROM memberships m
        JOIN users u ON u.user_id = m.user_id WHERE m.membership = 'join'"""
    ]
