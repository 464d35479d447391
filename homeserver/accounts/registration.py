"""Creating accounts: open, token-gated or closed registration, guests, and the
shared-secret admin registration that operators' scripts use."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homeserver.accounts.uia import REGISTRATION_TOKEN as REGISTRATION_TOKEN_STAGE
from homeserver.errors import MatrixError
from homeserver.identifiers import MAX_USER_ID_BYTES, is_valid_localpart, make_user_id
from homeserver.partners.notices import SYSTEM_LOCALPART
from homeserver.storage.database import Txn
from homeserver.storage.registration_tokens import RegistrationTokenStore
from homeserver.storage.uia import UiaStore
from homeserver.storage.users import UserStore

if TYPE_CHECKING:
    from homeserver.accounts.auth import AuthService
    from homeserver.accounts.passwords import PasswordHasher
    from homeserver.accounts.uia import UiaService
    from homeserver.audit import AuditLog
    from homeserver.clock import Clock
    from homeserver.config import RegistrationConfig
    from homeserver.storage.database import Database

NONCE_LIFETIME_MS = 60_000
# Localparts of the server's own accounts, created by the server when it first
# needs them: nobody may register them first (the server notices sender).
RESERVED_LOCALPARTS = frozenset({SYSTEM_LOCALPART})


@dataclass(frozen=True)
class LoginRequest:
    """The login a registration asks for, and where the request came from.

    POST /register builds one from its parameters (inhibit_login, device_id,
    initial_device_display_name, refresh_token) and its client, and hands it to
    whichever path answers: a new account, the account a retried session already
    made, or an upgraded guest. Each logs in the same way (`_login_in`). `ip` and
    `user_agent` are also the audit log's, so they are kept when login is inhibited.
    """

    inhibit: bool = False
    device_id: str | None = None
    device_display_name: str | None = None
    want_refresh: bool = False
    ip: str | None = None
    user_agent: str | None = None


NO_LOGIN = LoginRequest(inhibit=True)


class RegistrationService:
    def __init__(
        self, *, config: RegistrationConfig, server_name: str, db: Database, users: UserStore,
        registration_tokens: RegistrationTokenStore, uia: UiaService, auth: AuthService,
        audit: AuditLog, passwords: PasswordHasher, clock: Clock,
    ) -> None:
        self.config = config
        self.server_name = server_name
        self.db = db
        self.users = users
        self.registration_tokens = registration_tokens
        self.uia = uia
        self.auth = auth
        self.audit = audit
        self.passwords = passwords
        self.clock = clock
        self._nonces: dict[str, int] = {}

    def flows(self) -> list[list[str]]:
        policy = self.config.policy
        base = {"open": [], "token": ["m.login.registration_token"]}.get(policy)
        if base is None:
            return []
        email = self.config.email
        if email == "required":
            return [[*base, "m.login.email.identity"]]
        plain = base or ["m.login.dummy"]
        if email == "optional":
            return [plain, [*base, "m.login.email.identity"]]
        return [plain]

    def check_localpart(self, localpart: str) -> str:
        """The user ID a requested username maps to, or the spec's error for a bad one
        (M_USER_IN_USE for a system account's: it belongs to the server, created or not)."""
        if not isinstance(localpart, str) or not localpart:
            raise MatrixError(400, "M_INVALID_USERNAME", "Username must not be empty")
        localpart = localpart.lower()
        # "\n" is checked here because the grammar's regex ends in `$`, which also
        # matches just before a trailing newline.
        if "\n" in localpart or not is_valid_localpart(localpart):
            raise MatrixError(
                400, "M_INVALID_USERNAME", "Username may only contain a-z, 0-9, and ._=-/+"
            )
        if localpart.isdigit():
            # Numeric localparts are reserved for guests, whose IDs are allocated from a counter.
            raise MatrixError(400, "M_INVALID_USERNAME", "Numeric user IDs are reserved for guests")
        user_id = make_user_id(localpart, self.server_name)
        if len(user_id.encode()) > MAX_USER_ID_BYTES:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID is too long")
        if localpart in RESERVED_LOCALPARTS:
            raise MatrixError(400, "M_USER_IN_USE", "User ID is reserved for the server.")
        return user_id

    async def generate_user_id(self) -> str:
        """A free user ID for a registration that names none."""
        for _ in range(10):
            user_id = self.check_localpart("user" + secrets.token_hex(5))
            if not await self.users.is_taken(user_id):
                return user_id
        raise MatrixError(500, "M_UNKNOWN", "Could not allocate a user ID")

    async def token_is_valid(self, token: str) -> bool:
        """Whether a registration token can still be used."""
        await self.uia.sweep_expired()  # abandoned registrations give their token uses back
        return await self.registration_tokens.is_valid(token, self.clock.time_ms())

    async def check_available(self, localpart: str) -> str:
        user_id = self.check_localpart(localpart)
        if await self.users.is_taken(user_id):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
        return user_id

    def check_password(self, password: Any) -> None:
        if not isinstance(password, str):
            raise MatrixError(400, "M_BAD_JSON", "Field 'password' must be a string")
        if len(password) < self.config.password_min_length:
            raise MatrixError(
                400, "M_WEAK_PASSWORD",
                f"Password must be at least {self.config.password_min_length} characters",
            )
        if len(password) > 512:
            raise MatrixError(400, "M_BAD_JSON", "Password is too long")

    async def create_account(
        self,
        user_id: str,
        password: str | None,
        *,
        admin: bool = False,
        is_guest: bool = False,
        user_type: str | None = None,
        displayname: str | None = None,
        login: LoginRequest | bool = True,
        registration_token: str | None = None,
        uia_session: str | None = None,
        password_hash: str | None = None,
    ) -> dict[str, Any]:
        """Create the user and (unless inhibited) its first device and tokens, atomically.

        `login` is the registration's LoginRequest; True or False stand for a plain
        login (a device the server names) or none, for the server's own callers
        (the CLI, the admin API, tests).

        The UIA session that authorised the registration records the account in the
        same transaction, so a client retrying the completed session (its answer was
        lost) gets the same account back (`login_registered`) rather than a second
        one, and the registration token it used is not given back when it expires.
        """
        request = login if isinstance(login, LoginRequest) else LoginRequest() if login else NO_LOGIN
        pw_hash = password_hash or (await self.passwords.hash(password) if password else None)
        now = self.clock.time_ms()
        localpart = user_id[1:].split(":", 1)[0]

        async def fn(txn: Txn) -> dict[str, Any]:
            ok = await UserStore.insert_user(
                txn, user_id, pw_hash, now, admin=admin, is_guest=is_guest,
                user_type=user_type, displayname=displayname or localpart,
            )
            if not ok:
                raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
            if registration_token is not None:
                await RegistrationTokenStore.complete(txn, registration_token)
            if uia_session is not None:
                used = {REGISTRATION_TOKEN_STAGE: {"used": registration_token}} if registration_token else {}
                await UiaStore.mark_done_in(txn, uia_session, {"registered_user_id": user_id}, used)
            # A brand-new user has no devices, so no tokens can be revoked here.
            return await self._login_in(txn, user_id, request)

        result = await self.db.write(fn)
        await self.audit.record(
            "register", actor=user_id, target=user_id, ip=request.ip,
            details={"guest": is_guest, "admin": admin, "user_type": user_type},
        )
        result["home_server"] = self.server_name
        return result

    async def _login_in(self, txn: Txn, user_id: str, login: LoginRequest) -> dict[str, Any]:
        """The registration's answer inside its transaction: the user ID alone when
        login is inhibited, else a device (the requested one, or a new one) and tokens."""
        if login.inhibit:
            return {"user_id": user_id}
        session, _ = await self.auth.issue_session(
            txn, user_id, login.device_id, login.device_display_name, want_refresh=login.want_refresh,
            ip=login.ip, user_agent=login.user_agent,
        )
        return session

    async def hash_password(self, password: str) -> str:
        """A password's hash, for a registration session to keep instead of the password."""
        return await self.passwords.hash(password)

    async def login_registered(self, user_id: str, login: LoginRequest) -> dict[str, Any]:
        """A retried registration whose UIA session already made `user_id`: that
        account again, with a new login (unless inhibited), as Synapse answers."""
        user = await self.users.get_user(user_id)
        if user is None or user.deactivated:
            raise MatrixError(400, "M_UNKNOWN", "This registration session can no longer be used")
        if login.inhibit:
            result = {"user_id": user_id}
        else:
            result = await self.db.write(lambda txn: self._login_in(txn, user_id, login))
        result["home_server"] = self.server_name
        return result

    async def upgrade_guest(
        self, user_id: str, password: str, login: LoginRequest, *, uia_session: str | None = None,
    ) -> dict[str, Any]:
        """The guest becomes a full account keeping its user ID (and so its rooms and
        history), with a password and, unless inhibited, a new device and tokens; its
        guest devices stay signed in, now as the full account."""
        pw_hash = await self.passwords.hash(password)

        async def fn(txn: Txn) -> dict[str, Any]:
            if not await UserStore.upgrade_guest(txn, user_id, pw_hash):
                raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
            if uia_session is not None:
                await UiaStore.delete_in(txn, uia_session)
            return await self._login_in(txn, user_id, login)

        result = await self.db.write(fn)
        self.auth.forget_user(user_id)
        await self.audit.record(
            "register", actor=user_id, target=user_id, ip=login.ip, details={"guest_upgrade": True},
        )
        result["home_server"] = self.server_name
        return result

    async def register_guest(self, body: dict[str, Any], ip: str | None, ua: str | None) -> dict[str, Any]:
        if not self.config.allow_guests:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
        for _ in range(5):
            localpart = str(secrets.randbelow(10**12) + 10**11)
            user_id = make_user_id(localpart, self.server_name)
            if not await self.users.is_taken(user_id):
                break
        # The spec: every parameter but initial_device_display_name MUST be ignored
        # for guests, and the server picks the device ID.
        display = body.get("initial_device_display_name")
        login = LoginRequest(device_display_name=display if isinstance(display, str) else None, ip=ip, user_agent=ua)
        return await self.create_account(user_id, None, is_guest=True, login=login)

    # --- shared-secret registration (Synapse admin API compatible) ---

    def new_nonce(self) -> str:
        if not self.config.shared_secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        now = self.clock.time_ms()
        self._nonces = {n: t for n, t in self._nonces.items() if t + NONCE_LIFETIME_MS > now}
        nonce = secrets.token_hex(32)
        self._nonces[nonce] = now
        return nonce

    def check_shared_secret_mac(self, body: dict[str, Any]) -> None:
        secret = self.config.shared_secret
        if not secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        nonce = body.get("nonce")
        issued = self._nonces.pop(nonce, None) if isinstance(nonce, str) else None
        if issued is None or issued + NONCE_LIFETIME_MS < self.clock.time_ms():
            raise MatrixError(400, "M_UNKNOWN", "unrecognised nonce")
        for key in ("username", "password", "mac"):
            if not isinstance(body.get(key), str):
                raise MatrixError(400, "M_INVALID_PARAM", f"Field '{key}' must be a string")
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            raise MatrixError(400, "M_INVALID_PARAM", "Field 'admin' must be a boolean")
        user_type = body.get("user_type")
        if user_type is not None and not isinstance(user_type, str):
            raise MatrixError(400, "M_INVALID_PARAM", "Field 'user_type' must be a string")
        mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
        parts = [nonce, body["username"], body["password"], "admin" if admin else "notadmin"]
        if user_type:
            parts.append(user_type)
        mac.update(b"\x00".join(p.encode("utf-8") for p in parts))
        if not hmac.compare_digest(mac.hexdigest(), body["mac"]):
            raise MatrixError(403, "M_FORBIDDEN", "HMAC incorrect")
