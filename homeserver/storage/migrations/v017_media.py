"""The media repository: local uploads and the cache of other servers' media.

media: one row per file, local (is_local 1: uploaded here, origin is our server
name) or cached from another server. size and sha256 are NULL while an async
upload (POST /_matrix/media/v1/create) has no content yet; unused_expires_at is
when such an ID lapses. quarantined_by names the admin who quarantined it.
media_thumbnails: the thumbnails made of a file, by size, method and animation.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE media (
            origin TEXT NOT NULL,
            media_id TEXT NOT NULL,
            is_local INTEGER NOT NULL,
            content_type TEXT,
            filename TEXT,
            size {d['bigint']},
            sha256 TEXT,
            uploader TEXT,
            created_ts {d['bigint']} NOT NULL,
            unused_expires_at {d['bigint']},
            quarantined_by TEXT,
            last_access_ts {d['bigint']},
            PRIMARY KEY (origin, media_id)
        )""",
        "CREATE INDEX media_uploader ON media (uploader, created_ts)",
        "CREATE INDEX media_local_created ON media (is_local, created_ts)",
        f"""CREATE TABLE media_thumbnails (
            origin TEXT NOT NULL,
            media_id TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            method TEXT NOT NULL,
            animated INTEGER NOT NULL,
            content_type TEXT NOT NULL,
            size {d['bigint']} NOT NULL,
            PRIMARY KEY (origin, media_id, width, height, method, animated)
        )""",
    ]
