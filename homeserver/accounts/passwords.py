"""Password hashing with scrypt, a slow, memory-hard, salted KDF from the standard library.

Hashes carry their parameters, so raising the cost later leaves old hashes valid.
Hashing runs in a worker thread: at tens of milliseconds per hash it would
otherwise stall every other request on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets

_R, _P, _DKLEN = 8, 1, 32


def _kdf(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=_DKLEN
    )


def hash_password_sync(password: str, n: int = 16384) -> str:
    salt = secrets.token_bytes(16)
    digest = _kdf(password, salt, n, _R, _P)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${n}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password_sync(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.urlsafe_b64decode(salt_b64)
        expected = base64.urlsafe_b64decode(digest_b64)
        actual = _kdf(password, salt, int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class PasswordHasher:
    """Runs the KDF in worker threads, at most one per core at a time.

    Each scrypt call holds 128 * N * r bytes (16 MiB at the default N) while it
    runs, so an unbounded burst of logins would balloon memory for no gain in
    throughput: the cores are the limit either way.
    """

    def __init__(self, n: int = 16384, concurrency: int | None = None) -> None:
        self.n = n
        self._slots = asyncio.Semaphore(concurrency or os.cpu_count() or 2)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(hash_password_sync, password, self.n)

    async def verify(self, password: str, stored: str | None) -> bool:
        """Check a password; with no stored hash, spend the same time and say no,
        so response times do not reveal which accounts exist."""
        if not stored:
            if self._dummy is None:
                self._dummy = await self.hash(secrets.token_urlsafe(16))
            stored, password = self._dummy, ""
            async with self._slots:
                await asyncio.to_thread(verify_password_sync, password, stored)
            return False
        async with self._slots:
            return await asyncio.to_thread(verify_password_sync, password, stored)
