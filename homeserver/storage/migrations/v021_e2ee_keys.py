"""End-to-end encryption keys (homeserver/e2ee/keys.py, cross_signing.py).

e2e_device_keys: each device's signed identity keys as uploaded (signatures made
by cross-signing keys are kept apart, in e2e_key_signatures, and merged when
served). e2e_one_time_keys: unclaimed one-time keys, removed as they are claimed.
e2e_fallback_keys: one per device and algorithm, `used` once claimed.
e2e_cross_signing_keys: each user's master, self_signing and user_signing keys.
e2e_key_signatures: signatures uploaded with /keys/signatures/upload, by target.
"""


def statements(d: dict[str, str]) -> list[str]:
    return [
        """CREATE TABLE e2e_device_keys (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            key_json TEXT NOT NULL,
            PRIMARY KEY (user_id, device_id)
        )""",
        """CREATE TABLE e2e_one_time_keys (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            algorithm TEXT NOT NULL,
            key_id TEXT NOT NULL,
            key_json TEXT NOT NULL,
            PRIMARY KEY (user_id, device_id, algorithm, key_id)
        )""",
        """CREATE TABLE e2e_fallback_keys (
            user_id TEXT NOT NULL,
            device_id TEXT NOT NULL,
            algorithm TEXT NOT NULL,
            key_id TEXT NOT NULL,
            key_json TEXT NOT NULL,
            used INTEGER NOT NULL,
            PRIMARY KEY (user_id, device_id, algorithm)
        )""",
        """CREATE TABLE e2e_cross_signing_keys (
            user_id TEXT NOT NULL,
            key_type TEXT NOT NULL,
            key_json TEXT NOT NULL,
            PRIMARY KEY (user_id, key_type)
        )""",
        """CREATE TABLE e2e_key_signatures (
            target_user_id TEXT NOT NULL,
            target_key_id TEXT NOT NULL,
            signer_user_id TEXT NOT NULL,
            signer_key_id TEXT NOT NULL,
            signature TEXT NOT NULL,
            PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
        )""",
    ]
