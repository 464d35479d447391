"""Third-party identifiers (e-mail addresses) of accounts, and the validation
sessions that prove an address belongs to whoever asked to add it."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, IntegrityError, Txn


@dataclass(frozen=True)
class ValidationSession:
    sid: str
    client_secret: str
    medium: str
    address: str
    token: str
    send_attempt: int
    expires_ts: int
    validated_ts: int | None


_SESSION = "sid, client_secret, medium, address, token, send_attempt, expires_ts, validated_ts"


def _session(r: tuple) -> ValidationSession:
    return ValidationSession(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), None if r[7] is None else int(r[7]))


class ThreepidStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def user_for(self, medium: str, address: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?", (medium, address)
        )
        return row[0] if row else None

    async def for_user(self, user_id: str) -> list[tuple[str, str, int, int]]:
        """(medium, address, validated_at, added_at) of the user's identifiers."""
        rows = await self.db.fetchall(
            "SELECT medium, address, validated_at, added_at FROM user_threepids WHERE user_id = ?"
            " ORDER BY added_at, address",
            (user_id,),
        )
        return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    async def add(self, user_id: str, medium: str, address: str, validated_at: int, now: int) -> bool:
        """False when the address belongs to another account already."""

        async def fn(txn: Txn) -> bool:
            row = await txn.fetchone(
                "SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?", (medium, address)
            )
            if row is not None:
                return bool(row[0] == user_id)
            await txn.execute(
                "INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at) VALUES (?, ?, ?, ?, ?)",
                (user_id, medium, address, validated_at, now),
            )
            return True

        try:
            return await self.db.write(fn)
        except IntegrityError:
            return False

    async def delete(self, user_id: str, medium: str, address: str) -> bool:
        return await self.db.execute(
            "DELETE FROM user_threepids WHERE user_id = ? AND medium = ? AND address = ?", (user_id, medium, address)
        ) > 0

    @staticmethod
    async def delete_all(txn: Txn, user_id: str) -> None:
        """A deactivated account's addresses (and digest progress) go."""
        await txn.execute("DELETE FROM user_threepids WHERE user_id = ?", (user_id,))
        await txn.execute("DELETE FROM email_digests WHERE user_id = ?", (user_id,))

    async def session_for(self, client_secret: str, medium: str, address: str) -> ValidationSession | None:
        row = await self.db.fetchone(
            f"SELECT {_SESSION} FROM threepid_validations WHERE client_secret = ? AND medium = ? AND address = ?",
            (client_secret, medium, address),
        )
        return _session(row) if row else None

    async def session(self, sid: str) -> ValidationSession | None:
        row = await self.db.fetchone(f"SELECT {_SESSION} FROM threepid_validations WHERE sid = ?", (sid,))
        return _session(row) if row else None

    async def create_session(self, s: ValidationSession, now: int) -> None:
        async def fn(txn: Txn) -> None:
            await txn.execute("DELETE FROM threepid_validations WHERE expires_ts < ?", (now,))
            await txn.execute(
                "DELETE FROM threepid_validations WHERE client_secret = ? AND medium = ? AND address = ?",
                (s.client_secret, s.medium, s.address),
            )
            await txn.execute(
                f"INSERT INTO threepid_validations ({_SESSION}, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (s.sid, s.client_secret, s.medium, s.address, s.token, s.send_attempt, s.expires_ts, s.validated_ts,
                 now),
            )

        await self.db.write(fn)

    async def mark_validated(self, sid: str, now: int) -> None:
        await self.db.execute(
            "UPDATE threepid_validations SET validated_ts = ? WHERE sid = ? AND validated_ts IS NULL", (now, sid)
        )

    async def delete_session(self, sid: str) -> None:
        await self.db.execute("DELETE FROM threepid_validations WHERE sid = ?", (sid,))
