"""A real SMTP server on loopback (aiosmtpd) that keeps every mail it receives."""

from __future__ import annotations

import asyncio
import email
import re
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller

from tests.homeserver.push.gateway import _free_port


class MailSink:
    def __init__(self) -> None:
        self.port = _free_port("127.0.0.1")
        self.mails: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse = False
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()  # set from the server's thread, through the loop
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

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
        self._loop.call_soon_threadsafe(self._arrived.set)
        return "250 OK"

    async def wait_for(self, count: int) -> list[EmailMessage]:
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
