"""Password login, rate limited per client address and per account, and login
tokens: a signed-in user gets a short-lived token (POST /login/get_token) that
signs in once elsewhere with `m.login.token`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from homeserver.accounts.auth import check_device_id, hash_token, new_token
from homeserver.errors import MatrixError
from homeserver.identifiers import make_user_id, parse_user_id

if TYPE_CHECKING:
    from homeserver.accounts.auth import AuthService
    from homeserver.accounts.passwords import PasswordHasher
    from homeserver.audit import AuditLog
    from homeserver.clock import Clock
    from homeserver.ratelimit import RateLimiter
    from homeserver.storage.database import Database
    from homeserver.storage.login_tokens import LoginTokenStore
    from homeserver.storage.users import UserStore

PASSWORD_LOGIN = "m.login.password"
TOKEN_LOGIN = "m.login.token"
#: How long a login token may wait to be used (the spec suggests a short time).
LOGIN_TOKEN_LIFETIME_MS = 2 * 60 * 1000


class LoginService:
    def __init__(
        self, *, db: Database, users: UserStore, auth: AuthService, audit: AuditLog,
        passwords: PasswordHasher, ratelimiter: RateLimiter, server_name: str,
        client_base_url: str | None, login_tokens: LoginTokenStore, clock: Clock,
    ) -> None:
        self.db = db
        self.login_tokens = login_tokens
        self.clock = clock
        self.users = users
        self.auth = auth
        self.audit = audit
        self.passwords = passwords
        self.ratelimiter = ratelimiter
        self.server_name = server_name
        self.client_base_url = client_base_url  # well_known.client_base_url
        # Told, after the commit, of the user who logged in: a device was created (or
        # reused), so their device list changed (DeviceLists.mark_changed).
        self.device_listeners: list[Callable[[str], Awaitable[None]]] = []

    def flows(self) -> list[dict[str, Any]]:
        return [{"type": PASSWORD_LOGIN}, {"type": TOKEN_LOGIN, "get_login_token": True}]

    async def create_login_token(self, user_id: str) -> dict[str, Any]:
        """POST /login/get_token (after UIA): a token that signs `user_id` in once."""
        token = new_token("lt")
        now = self.clock.time_ms()
        await self.login_tokens.create(hash_token(token), user_id, now + LOGIN_TOKEN_LIFETIME_MS, now)
        await self.audit.record("login_token", actor=user_id, target=user_id)
        return {"login_token": token, "expires_in_ms": LOGIN_TOKEN_LIFETIME_MS}

    def _user_id_from(self, body: dict[str, Any]) -> str:
        ident = body.get("identifier")
        if ident is not None:
            if not isinstance(ident, dict):
                raise MatrixError(400, "M_BAD_JSON", "Field 'identifier' must be an object")
            if ident.get("type") != "m.id.user":
                raise MatrixError(400, "M_UNKNOWN", "Unsupported identifier type")
            user = ident.get("user")
        else:
            user = body.get("user")  # deprecated top-level form
        if not isinstance(user, str) or not user:
            raise MatrixError(400, "M_BAD_JSON", "Field 'identifier.user' must be a non-empty string")
        if user.startswith("@"):
            parsed = parse_user_id(user)
            if parsed is None:
                raise MatrixError(403, "M_FORBIDDEN", "Invalid username or password")
            return user
        return make_user_id(user, self.server_name)

    async def _audit_failure(self, user_id: str, ip: str, reason: str) -> None:
        """A refused login, under the account it claimed (which may not exist)."""
        await self.audit.record(
            "login.failed", actor=user_id, target=user_id, ip=ip, outcome="failed",
            details={"reason": reason},
        )

    async def login(self, body: dict[str, Any], ip: str, user_agent: str | None) -> dict[str, Any]:
        login_type = body.get("type")
        if login_type == TOKEN_LOGIN:
            return await self._token_login(body, ip, user_agent)
        if login_type != PASSWORD_LOGIN:
            raise MatrixError(400, "M_UNKNOWN", f"Unknown login type {login_type!r}")
        limiter = self.ratelimiter
        user_id = self._user_id_from(body)
        # Per address; users the operator exempts (bots that log in often) skip it.
        limiter.check("login", ip, exempt=self.ratelimiter.exempt(user_id))
        password = body.get("password")
        if not isinstance(password, str):
            raise MatrixError(400, "M_BAD_JSON", "Field 'password' must be a string")
        device_id, display, want_refresh = self._device_fields(body)

        # Failed attempts against one account are limited separately so that a
        # guessing attack from many addresses still stalls.
        if not limiter.would_allow("login_failures", user_id.lower()):
            limiter.check("login_failures", user_id.lower())
        user = await self.users.get_user(user_id)
        if user is None:
            matches = await self.users.get_user_case_insensitive(user_id)
            user = matches[0] if len(matches) == 1 else None
        if user is not None and user.deactivated:
            # Deactivation wipes the password, so no password could prove anything here;
            # the spec's dedicated code tells the client why rather than "wrong password".
            await self._audit_failure(user.user_id, ip, "deactivated")
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        ok = await self.passwords.verify(password, user.password_hash if user else None)
        if not ok or user is None:
            await self._audit_failure(user.user_id if user else user_id, ip, "bad_credentials")
            limiter.check("login_failures", user_id.lower())
            raise MatrixError(403, "M_FORBIDDEN", "Invalid username or password")
        if user.locked:
            await self._audit_failure(user.user_id, ip, "locked")
            raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
        return await self._signed_in(user.user_id, device_id, display, want_refresh, ip, user_agent)

    async def _token_login(self, body: dict[str, Any], ip: str, user_agent: str | None) -> dict[str, Any]:
        """m.login.token: a token from /login/get_token, good once and briefly."""
        self.ratelimiter.check("login", ip)
        token = body.get("token")
        if token is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing field 'token'")
        if not isinstance(token, str) or not token:
            raise MatrixError(400, "M_BAD_JSON", "Field 'token' must be a non-empty string")
        device_id, display, want_refresh = self._device_fields(body)
        user_id = await self.login_tokens.take(hash_token(token), self.clock.time_ms())
        user = await self.users.get_user(user_id) if user_id is not None else None
        if user is None:
            raise MatrixError(403, "M_FORBIDDEN", "Invalid or expired login token")
        if user.deactivated:
            await self._audit_failure(user.user_id, ip, "deactivated")
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        if user.locked:
            await self._audit_failure(user.user_id, ip, "locked")
            raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
        return await self._signed_in(user.user_id, device_id, display, want_refresh, ip, user_agent)

    def _device_fields(self, body: dict[str, Any]) -> tuple[str | None, str | None, bool]:
        """The device a login asks for: its ID, display name, and whether it wants a refresh token."""
        if body.get("device_id") == "":
            raise MatrixError(400, "M_BAD_JSON", "Field 'device_id' must be a non-empty string")
        device_id = check_device_id(body.get("device_id"))
        display = body.get("initial_device_display_name")
        if display is not None and not isinstance(display, str):
            raise MatrixError(400, "M_BAD_JSON", "Field 'initial_device_display_name' must be a string")
        want_refresh = body.get("refresh_token", False)
        if not isinstance(want_refresh, bool):
            raise MatrixError(400, "M_BAD_JSON", "Field 'refresh_token' must be a boolean")
        return device_id, display, want_refresh

    async def _signed_in(
        self, user_id: str, device_id: str | None, display: str | None, want_refresh: bool, ip: str,
        user_agent: str | None,
    ) -> dict[str, Any]:
        result, revoked = await self.db.write(
            lambda txn: self.auth.issue_session(
                txn, user_id, device_id, display, want_refresh=want_refresh, ip=ip,
                user_agent=user_agent,
            )
        )
        self.auth.forget_tokens(revoked)
        for listener in self.device_listeners:
            await listener(user_id)
        await self.audit.record(
            "login", actor=user_id, target=user_id, ip=ip,
            details={"device_id": result["device_id"], "user_agent": user_agent},
        )
        result["home_server"] = self.server_name
        base_url = self.client_base_url
        if base_url:
            result["well_known"] = {"m.homeserver": {"base_url": base_url}}
        return result
