"""The user directory's index (homeserver/user_directory/).

user_directory_rooms: the rooms whose joined members any user may find (join
rule public, or history visibility world_readable), kept by a listener on their
state events. user_directory_remote: other servers' users as their join events
last showed them, with the normalized words they are found by (local users are
searched in `profiles` itself). user_directory_built: one row once both were
filled from the rooms that existed before the listeners did.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"CREATE TABLE user_directory_rooms (room_nid {d['bigint']} PRIMARY KEY)",
        """CREATE TABLE user_directory_remote (
            user_id TEXT PRIMARY KEY,
            display_name TEXT,
            avatar_url TEXT,
            search_text TEXT NOT NULL
        )""",
        "CREATE TABLE user_directory_built (version INTEGER NOT NULL)",
    ]
