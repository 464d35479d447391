"""E-mail addresses on accounts (the spec's /account/3pid endpoints, medium
"email"): a validation mail with a link served by this server proves the
address, then POST /account/3pid/add (after user-interactive auth) binds it.
Nothing is sent to identity servers; unbinding answers "no-support".
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from homeserver.clock import Clock
from homeserver.config import EmailConfig
from homeserver.errors import MatrixError, bad_json, invalid_param, missing_param
from homeserver.storage.threepids import ThreepidStore, ValidationSession

if TYPE_CHECKING:  # loaded only when e-mail is on (HomeServer builds a Mailer)
    from homeserver.email.mailer import Mailer

EMAIL = "email"
CLIENT_SECRET = re.compile(r"[0-9a-zA-Z.=_-]{1,255}")
# Deliberately plain: one @, no whitespace or control characters, a dot in the domain.
_ADDRESS = re.compile(r"[^@\s\x00-\x1f\x7f<>,;\"]{1,64}@[^@\s\x00-\x1f\x7f<>,;\"]+\.[^@\s\x00-\x1f\x7f<>,;\"]+")
MAX_ADDRESS = 254
SUBMIT_PATH = "/_accord/client/email/submit_token"
# The link in notification mails that turns their e-mail pusher off (`EmailNotifier.unsubscribe`).
UNSUBSCRIBE_PATH = "/_accord/client/email/unsubscribe"


def canonical_email(value: Any) -> str:
    """The address as stored: trimmed and lower-cased; 400 M_INVALID_PARAM if it is not one."""
    if not isinstance(value, str):
        raise bad_json("Field 'email' must be a string")
    address = value.strip().lower()
    if len(address) > MAX_ADDRESS or _ADDRESS.fullmatch(address) is None:
        raise invalid_param("Not a valid e-mail address")
    return address


def check_client_secret(value: Any) -> str:
    if value is None:
        raise missing_param("Missing required field 'client_secret'")
    if not isinstance(value, str) or CLIENT_SECRET.fullmatch(value) is None:
        raise invalid_param("client_secret must be 1 to 255 of [0-9a-zA-Z.=_-]")
    return value


class ThreepidService:
    def __init__(
        self, *, store: ThreepidStore, mailer: Mailer | None, config: EmailConfig, clock: Clock,
        rate_limit: Callable[[str, str], None], address_removed: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.store = store
        self.mailer = mailer
        self.config = config
        self.clock = clock
        self.rate_limit = rate_limit  # (action key, bucket key): raises 429
        self.address_removed = address_removed  # (user, address): its e-mail pushers go
        # user -> the mail language they chose (e-mail notifier's account data), for
        # the password-reset mail of an existing account; connected by the server.
        self.language_of: Callable[[str], Awaitable[str | None]] | None = None

    def _enabled(self) -> Mailer:
        if self.mailer is None:
            raise MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "This server does not send e-mail")
        return self.mailer

    async def request_token(
        self, body: dict[str, Any], client_ip: str, *, for_reset: bool = False, languages: Sequence[str] = (),
    ) -> dict[str, Any]:
        """POST /account/3pid/email/requestToken: mail a validation link (once per
        send_attempt: a retry with the same one answers the same session). With
        `for_reset` (POST /account/password/email/requestToken) the address must
        already belong to an account, whose password the validated session may reset.
        The mail is in the account owner's chosen language, else the first of
        `languages` (the request's Accept-Language) the templates have."""
        mailer = self._enabled()
        secret = check_client_secret(body.get("client_secret"))
        if "email" not in body:
            raise missing_param("Missing required field 'email'")
        address = canonical_email(body["email"])
        attempt = body.get("send_attempt")
        if attempt is None:
            raise missing_param("Missing required field 'send_attempt'")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or not 0 <= attempt < 2**53:
            raise invalid_param("send_attempt must be a non-negative integer")
        owner = await self.store.user_for(EMAIL, address)
        if for_reset and owner is None:
            raise MatrixError(400, "M_THREEPID_NOT_FOUND", "No account has this e-mail address")
        if not for_reset and owner is not None:
            raise MatrixError(400, "M_THREEPID_IN_USE", "This e-mail address is already in use")
        now = self.clock.time_ms()
        existing = await self.store.session_for(secret, EMAIL, address)
        if existing is not None and existing.expires_ts > now and attempt <= existing.send_attempt:
            return {"sid": existing.sid}
        self.rate_limit("email_request", f"ip:{client_ip}")
        self.rate_limit("email_request", f"address:{address}")
        session = ValidationSession(
            secrets.token_urlsafe(16), secret, EMAIL, address, secrets.token_urlsafe(24), attempt,
            now + self.config.validation_lifetime_s * 1000, None,
        )
        await self.store.create_session(session, now)
        base = (self.config.public_baseurl or "").rstrip("/")
        link = f"{base}{SUBMIT_PATH}?" + urlencode(
            {"sid": session.sid, "client_secret": secret, "token": session.token}
        )
        chosen = await self.language_of(owner) if owner is not None and self.language_of is not None else None
        mail = mailer.render(
            "reset" if for_reset else "validate", mailer.languages(chosen, *languages), address=address, link=link,
        )
        from homeserver.email.mailer import MailError  # loaded with the mailer already

        try:
            await mailer.send(mailer.message(address, mail))
        except MailError as exc:
            # The mail relay is down or refused us: nothing of ours is broken, so not a
            # 500. The session goes, so a retry with the same send_attempt mails anew.
            await self.store.delete_session(session.sid)
            raise MatrixError(
                503, "M_UNKNOWN", "The validation mail could not be sent; try again later"
            ) from exc
        return {"sid": session.sid}

    async def submit_token(self, sid: str, client_secret: str, token: str) -> bool:
        """The link in the validation mail (no login: the token is the proof)."""
        session = await self.store.session(sid)
        now = self.clock.time_ms()
        if (
            session is None or session.expires_ts <= now
            or not hmac.compare_digest(session.client_secret, client_secret)
            or not hmac.compare_digest(session.token, token)
        ):
            return False
        await self.store.mark_validated(sid, now)
        return True

    async def add(self, user_id: str, body: dict[str, Any]) -> None:
        """POST /account/3pid/add, after user-interactive auth."""
        self._enabled()
        secret = check_client_secret(body.get("client_secret"))
        sid = body.get("sid")
        if not isinstance(sid, str):
            raise missing_param("Missing required field 'sid'") if sid is None else bad_json("'sid' must be a string")
        session = await self.store.session(sid)
        now = self.clock.time_ms()
        if (
            session is None or session.validated_ts is None or session.expires_ts <= now
            or not hmac.compare_digest(session.client_secret, secret)
        ):
            raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "The address has not been validated in this session")
        if not await self.store.add(user_id, session.medium, session.address, session.validated_ts, now):
            raise MatrixError(400, "M_THREEPID_IN_USE", "This e-mail address is already in use")
        await self.store.delete_session(sid)

    async def delete(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /account/3pid/delete: the address leaves the account, with its e-mail pushers."""
        medium, address = body.get("medium"), body.get("address")
        if medium is None or address is None:
            raise missing_param("Missing required fields 'medium' and 'address'")
        if not isinstance(medium, str) or not isinstance(address, str):
            raise bad_json("'medium' and 'address' must be strings")
        if medium == EMAIL:
            address = address.strip().lower()
        if await self.store.delete(user_id, medium, address):
            await self.address_removed(user_id, address)
        return {"id_server_unbind_result": "no-support"}

    async def identity_of(self, creds: Any) -> tuple[str, str | None] | None:
        """The m.login.email.identity stage: the address the validated session named by
        `threepid_creds` (sid, client_secret) proves, and the account owning it."""
        if not isinstance(creds, dict) or not isinstance(creds.get("sid"), str):
            return None
        secret = creds.get("client_secret")
        session = await self.store.session(creds["sid"])
        if (
            session is None or session.validated_ts is None or not isinstance(secret, str)
            or session.expires_ts <= self.clock.time_ms() or not hmac.compare_digest(session.client_secret, secret)
        ):
            return None
        owner = await self.store.user_for(session.medium, session.address)
        await self.store.delete_session(session.sid)  # proves one operation, once
        return session.address, owner

    async def bind_registered(self, user_id: str, address: str) -> None:
        """A new account registered with a validated address: it is the account's now."""
        now = self.clock.time_ms()
        if not await self.store.add(user_id, EMAIL, address, now, now):
            raise MatrixError(400, "M_THREEPID_IN_USE", "This e-mail address is already in use")

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        return [
            {"medium": m, "address": a, "validated_at": v, "added_at": t}
            for m, a, v, t in await self.store.for_user(user_id)
        ]

    async def owner(self, address: str) -> str | None:
        return await self.store.user_for(EMAIL, address)
