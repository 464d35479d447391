"""Notifications: stored push actions, pushers and the push gateway queue.

`event_push_actions` holds, for each local user an event notifies, the actions
their push rules gave it when it was written (one row per user and event,
written in the event's own transaction), with the thread it belongs to and
whether it highlights: unread counts and GET /notifications read these rows
instead of evaluating rules at read time. `pushers` holds the users' pushers
(POST /pushers/set) with the device that set them. `push_queue` is each
pusher's durable delivery queue: one row per notification (event_nid set) or a
pending badge-only update (event_nid NULL, at most one per pusher), deleted
once the push gateway accepted it, retried with backoff until then.

E-mail: `user_threepids` holds the validated e-mail addresses of accounts;
`threepid_validations` the validation sessions (POST .../requestToken: a token
mailed as a link, valid until `expires_ts`); `email_pusher_state` how far each
e-mail pusher has mailed (the stream position of the last notification sent);
`email_digests` when each user's last digest was sent.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE event_push_actions (
            user_id TEXT NOT NULL,
            room_nid {d['bigint']} NOT NULL,
            stream_ordering {d['bigint']} NOT NULL,
            event_nid {d['bigint']} NOT NULL,
            thread_id TEXT NOT NULL,
            highlight INTEGER NOT NULL,
            actions TEXT NOT NULL,
            ts {d['bigint']} NOT NULL,
            PRIMARY KEY (user_id, room_nid, stream_ordering)
        )""",
        "CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_ordering)",
        "CREATE INDEX event_push_actions_event ON event_push_actions (event_nid)",
        f"""CREATE TABLE pushers (
            pusher_nid {d['bigint_pk']},
            user_id TEXT NOT NULL,
            device_id TEXT,
            kind TEXT NOT NULL,
            app_id TEXT NOT NULL,
            pushkey TEXT NOT NULL,
            app_display_name TEXT NOT NULL,
            device_display_name TEXT NOT NULL,
            profile_tag TEXT,
            lang TEXT NOT NULL,
            data TEXT NOT NULL,
            created_ts {d['bigint']} NOT NULL,
            UNIQUE (user_id, app_id, pushkey)
        )""",
        "CREATE INDEX pushers_key ON pushers (app_id, pushkey)",
        f"""CREATE TABLE push_queue (
            queue_nid {d['bigint_pk']},
            pusher_nid {d['bigint']} NOT NULL,
            event_nid {d['bigint']},
            room_nid {d['bigint']} NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_ts {d['bigint']} NOT NULL DEFAULT 0,
            created_ts {d['bigint']} NOT NULL
        )""",
        "CREATE INDEX push_queue_pusher ON push_queue (pusher_nid, queue_nid)",
        f"""CREATE TABLE user_threepids (
            user_id TEXT NOT NULL,
            medium TEXT NOT NULL,
            address TEXT NOT NULL,
            validated_at {d['bigint']} NOT NULL,
            added_at {d['bigint']} NOT NULL,
            PRIMARY KEY (medium, address)
        )""",
        "CREATE INDEX user_threepids_user ON user_threepids (user_id)",
        f"""CREATE TABLE threepid_validations (
            sid TEXT PRIMARY KEY,
            client_secret TEXT NOT NULL,
            medium TEXT NOT NULL,
            address TEXT NOT NULL,
            token TEXT NOT NULL,
            send_attempt {d['bigint']} NOT NULL,
            created_ts {d['bigint']} NOT NULL,
            expires_ts {d['bigint']} NOT NULL,
            validated_ts {d['bigint']}
        )""",
        "CREATE INDEX threepid_validations_secret ON threepid_validations (client_secret, address)",
        f"""CREATE TABLE email_pusher_state (
            pusher_nid {d['bigint']} PRIMARY KEY,
            last_stream_ordering {d['bigint']} NOT NULL
        )""",
        f"""CREATE TABLE email_digests (
            user_id TEXT PRIMARY KEY,
            last_sent_ts {d['bigint']} NOT NULL
        )""",
    ]
