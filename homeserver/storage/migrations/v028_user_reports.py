"""user_reports: users reported to the server's admins (POST /users/{userId}/report,
v1.14), kept beside event_reports and room_reports. The reported user is named by ID,
local or remote, so a report stays readable after the account is gone."""


def statements(d: dict[str, str]) -> list[str]:
    return [
        f"""CREATE TABLE user_reports (
            id {d['bigint_pk']},
            received_ts {d['bigint']} NOT NULL,
            target_user_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE INDEX user_reports_target ON user_reports (target_user_id)",
    ]
