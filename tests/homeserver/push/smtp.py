"""A real SMTP server on loopback (aiosmtpd) that keeps every mail it receives."""

from __future__ import annotations

import asyncio
import email
import re
import ssl
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller

from tests.homeserver.push.gateway import _free_port


class MailSink:
    """`smtp_options` go to aiosmtpd's server (tls_context with require_starttls,
    authenticator); `ssl_context` makes the port TLS from the first byte. Waiting works
    from whichever event loop the test runs in, so one sink can serve a whole module."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, **smtp_options: Any) -> None:
        self.port = _free_port("127.0.0.1")
        self.mails: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        # For each mail: who logged in (what the authenticator returned) and whether over TLS.
        self.sessions: list[tuple[Any, bool]] = []
        self.refuse = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None  # set from the server's thread, through the loop
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, ssl_context=ssl_context, **smtp_options,
        )

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        if self.refuse:
            return "451 Try again later"
        msg = email.message_from_bytes(envelope.content, policy=default)
        assert isinstance(msg, EmailMessage)
        self.mails.append(msg)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.sessions.append((session.auth_data, server.transport.get_extra_info("ssl_object") is not None))
        loop, arrived = self._loop, self._arrived
        if loop is not None and arrived is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(arrived.set)
            except RuntimeError:  # that test's loop closed meanwhile: nobody is waiting
                pass
        return "250 OK"

    async def wait_for(self, count: int) -> list[EmailMessage]:
        self._loop, self._arrived = asyncio.get_running_loop(), asyncio.Event()
        async with asyncio.timeout(60):
            while len(self.mails) < count:
                self._arrived.clear()
                if len(self.mails) < count:
                    await self._arrived.wait()
        return list(self.mails)


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def links(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"<>]+", text)
