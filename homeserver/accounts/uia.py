"""User-interactive authentication (the spec's UIA), shared by registration,
device deletion, password change and deactivation.

A session remembers which stages are done and the request's non-secret
parameters; passwords are never written to it (registration keeps a password's
hash, given as a server-side value, so the final request may omit it).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.errors import MatrixError
from homeserver.identifiers import make_user_id, parse_user_id
from homeserver.storage.database import Txn
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.uia import UiaStore

if TYPE_CHECKING:
    from homeserver.accounts.auth import Requester
    from homeserver.accounts.passwords import PasswordHasher
    from homeserver.clock import Clock
    from homeserver.ratelimit import RateLimiter
    from homeserver.storage.database import Database
    from homeserver.storage.users import UserStore

SESSION_LIFETIME_MS = 30 * 60 * 1000
_SWEEP_INTERVAL_MS = 60 * 1000
_SECRET_KEYS = ("password", "new_password", "auth")
#: Parameters only the server sets (`remember`); a client's keys of these names are dropped.
SERVER_KEYS = ("password_hash", "registered_user_id")

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"
EMAIL_IDENTITY = "m.login.email.identity"


class UiaRequired(MatrixError):
    """The 401 answer that tells the client which stages remain."""

    def __init__(self, body: dict[str, Any], errcode: str | None = None, message: str | None = None) -> None:
        super().__init__(401, errcode or "M_FORBIDDEN", message or "Additional authentication required")
        self.body = body
        self.has_error = errcode is not None

    def to_json(self) -> dict[str, Any]:
        body = dict(self.body)
        if self.has_error:
            body["errcode"] = self.errcode
            body["error"] = self.message
        return body


@dataclass(frozen=True)
class UiaResult:
    """A completed flow: the session stays alive until the caller's operation succeeds
    (`UiaService.finish`), so a request that fails after authentication (a username
    taken meanwhile, a missing field) can be retried without authenticating again."""

    session_id: str
    completed: dict[str, Any]
    params: dict[str, Any]


class UiaService:
    def __init__(
        self, *, store: UiaStore, db: Database, users: UserStore,
        registration_tokens: RegistrationTokenStore, passwords: PasswordHasher,
        ratelimiter: RateLimiter, clock: Clock, server_name: str,
    ) -> None:
        self.store = store
        self.db = db
        self.users = users
        self.registration_tokens = registration_tokens
        self.passwords = passwords
        self.ratelimiter = ratelimiter
        self.clock = clock
        self.server_name = server_name
        self._last_sweep_ms = 0
        self._email_identity: Callable[[Any], Awaitable[tuple[str, str | None] | None]] | None = None

    def connect(self, *, email_identity: Callable[[Any], Awaitable[tuple[str, str | None] | None]]) -> None:
        """The e-mail stage's check (homeserver/email/threepids.py, built later): the
        validated address the stage's threepid_creds prove and the account it belongs
        to (None: no account), or None when they prove nothing."""
        self._email_identity = email_identity

    async def check(
        self,
        body: dict[str, Any],
        *,
        uri: str,
        method: str,
        flows: list[list[str]],
        requester: Requester | None = None,
        remember: dict[str, Any] | None = None,
    ) -> UiaResult:
        """Run one UIA step; returns the session's completed stage results and
        remembered parameters when a flow is complete, else raises UiaRequired.

        The parameters of every request are kept, later ones taking precedence, so
        a request may omit what an earlier one sent; `remember` adds server-side
        values (a password's hash) under names no client can set."""
        now = self.clock.time_ms()
        await self.sweep_expired()
        store = self.store
        auth = body.get("auth")
        params = {k: v for k, v in body.items() if k not in _SECRET_KEYS and k not in SERVER_KEYS}
        params.update(remember or {})
        if auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, "M_BAD_JSON", "Field 'auth' must be an object")
        session_id = auth.get("session") if auth else None
        if session_id is not None and not isinstance(session_id, str):
            raise MatrixError(400, "M_BAD_JSON", "Field 'auth.session' must be a string")

        if session_id is None:
            session_id = secrets.token_urlsafe(24)
            await store.create(session_id, now, uri, method, params)
            completed: dict[str, Any] = {}
            stored_params = params
        else:
            found = await store.get(session_id)
            if found is not None and found[0] + SESSION_LIFETIME_MS < now:
                await self.sweep_expired(force=True)
                found = None
            if found is None:
                raise MatrixError(400, "M_UNKNOWN", "Unknown or expired UIA session")
            _, s_uri, s_method, completed, stored_params = found
            if s_uri != uri or s_method != method:
                raise MatrixError(
                    403, "M_FORBIDDEN", "Requested operation has changed during the UI authentication session."
                )
            # A session proven with one user's password must not authorise another user.
            proven = completed.get(PASSWORD)
            if requester is not None and proven is not None and proven != requester.user_id:
                raise MatrixError(403, "M_FORBIDDEN", "This session belongs to another user")
            merged = {**stored_params, **params}
            if merged != stored_params:
                await store.set_params(session_id, merged)
            stored_params = merged

        def challenge(errcode: str | None = None, message: str | None = None) -> UiaRequired:
            return UiaRequired(
                {
                    "flows": [{"stages": f} for f in flows],
                    "params": {},
                    "session": session_id,
                    "completed": list(completed),
                },
                errcode,
                message,
            )

        if auth is not None and "type" in auth:
            stage = auth["type"]
            allowed = {s for f in flows for s in f}
            if not isinstance(stage, str) or stage not in allowed:
                raise challenge("M_UNRECOGNIZED", f"Unrecognised or disallowed auth type: {stage!r}")
            # Completed stages are not re-run (the spec forbids retrying them): re-running
            # the token stage would reserve a second use of the same registration token.
            if stage not in completed:
                result = await self._check_stage(stage, auth, requester, now, registering=uri == "/register")
                if result is None:
                    raise challenge("M_FORBIDDEN", "Invalid authentication")
                completed[stage] = result
                await store.set_completed(session_id, completed)

        for flow in flows:
            if all(s in completed for s in flow):
                return UiaResult(session_id, completed, stored_params)
        raise challenge()

    async def finish(self, result: UiaResult) -> None:
        """The authorised operation succeeded: the session cannot be used again."""
        await self.store.delete(result.session_id)

    async def sweep_expired(self, *, force: bool = False) -> None:
        """Drop expired sessions and give back the registration-token uses they held,
        so abandoned registrations do not use up a token. Runs at most once a minute
        unless forced."""
        now = self.clock.time_ms()
        if not force and now - self._last_sweep_ms < _SWEEP_INTERVAL_MS:
            return
        self._last_sweep_ms = now

        async def fn(txn: Txn) -> None:
            for completed in await UiaStore.take_expired(txn, now - SESSION_LIFETIME_MS):
                token = completed.get(REGISTRATION_TOKEN)
                if isinstance(token, str):
                    await RegistrationTokenStore.release_in(txn, token)

        await self.db.write(fn)

    async def _check_stage(
        self, stage: str, auth: dict[str, Any], requester: Requester | None, now: int, *, registering: bool = False
    ) -> Any:
        if stage == DUMMY:
            return True
        if stage == REGISTRATION_TOKEN:
            token = auth.get("token")
            if not isinstance(token, str) or not token:
                return None
            if not await self.registration_tokens.reserve(token, now):
                return None
            return token
        if stage == PASSWORD:
            return await self._check_password(auth, requester)
        if stage == EMAIL_IDENTITY and self._email_identity is not None:
            # Registering: an address no account has yet (the result). Otherwise: an
            # address of the account acted on (the result is that account).
            proven = await self._email_identity(auth.get("threepid_creds"))
            if proven is None:
                return None
            address, owner = proven
            if registering:
                return address if owner is None else None
            if owner is None or (requester is not None and requester.user_id != owner):
                return None
            return owner
        return None

    async def _check_password(self, auth: dict[str, Any], requester: Requester | None) -> str | None:
        """The m.login.password stage: the requester's own password, rate limited like
        failed logins so a stolen access token cannot be used to guess it."""
        if requester is None:
            return None
        named = _identifier_user_id(auth, self.server_name)
        if named is _UNUSABLE or (named is not None and named.lower() != requester.user_id.lower()):
            return None
        password = auth.get("password")
        if not isinstance(password, str):
            return None
        limiter = self.ratelimiter
        key = requester.user_id.lower()
        if not limiter.would_allow("login_failures", key):
            limiter.check("login_failures", key)
        user = await self.users.get_user(requester.user_id)
        if user is None or not await self.passwords.verify(password, user.password_hash):
            limiter.check("login_failures", key)
            return None
        return requester.user_id


_UNUSABLE = "\x00unusable"


def _identifier_user_id(auth: dict[str, Any], server_name: str) -> str | None:
    """The user an auth dict names (m.id.user identifier or the legacy 'user' key):
    None when it names none, _UNUSABLE when it names one this server cannot resolve
    (a third-party ID: Accord binds none, so the stage must fail)."""
    ident = auth.get("identifier")
    if ident is not None:
        if not isinstance(ident, dict) or ident.get("type") != "m.id.user":
            return _UNUSABLE
        user = ident.get("user")
    elif "user" in auth:
        user = auth.get("user")
    else:
        return None
    if not isinstance(user, str):
        return _UNUSABLE
    if user.startswith("@"):
        return user if parse_user_id(user) else _UNUSABLE
    return make_user_id(user.lower(), server_name)
