"""SMTP with TLS from the first byte, with STARTTLS, and with AUTH, against real
aiosmtpd servers on loopback whose certificates come from the test CA: the mail
that arrives is read back, a server whose certificate is not trusted is refused, and
a relay that refuses our password makes mail wait (logged), not vanish."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from homeserver.config import ConfigError, EmailConfig, parse_config
from homeserver.email.mailer import Mailer, MailError, Rendered
from tests.conftest import config_dict
from tests.homeserver.api.reading_helpers import send, user
from tests.homeserver.push.smtp import MailSink, html_of, text_of
from tests.homeserver.push.test_email import add_email, email_config
from tests.tls_ca import TestCA

HOST = "127.0.0.1"


class Passwords:
    """An aiosmtpd authenticator whose accepted password a test can change (the
    relay's password rotated under us, then our config catching up)."""

    def __init__(self, login: str, password: str) -> None:
        self.login = login
        self.password = password
        self.refused = 0  # connections refused (a client may try several mechanisms in one)

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword) and data.login.decode() == self.login \
                and data.password.decode() == self.password:
            return AuthResult(success=True, auth_data=self.login)
        if not getattr(session, "accord_refused", False):
            session.accord_refused = True
            self.refused += 1
        return AuthResult(success=False, handled=False)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("smtp-ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("other-ca"))


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords("accord", "relay secret")


@pytest.fixture(scope="module")
def tls_sink(ca: TestCA) -> Iterator[MailSink]:
    """TLS from the first byte (port 465 style)."""
    s = MailSink(ssl_context=ca.server_context(HOST, "smtps"))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def starttls_sink(ca: TestCA, passwords: Passwords) -> Iterator[MailSink]:
    """Port 587 style: STARTTLS required before anything else, then AUTH."""
    s = MailSink(tls_context=ca.server_context(HOST, "submission"), require_starttls=True,
                 authenticator=passwords, auth_required=True)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def untrusted_sink(other_ca: TestCA) -> Iterator[MailSink]:
    """A server on the right address with a certificate from a CA we do not trust."""
    s = MailSink(tls_context=other_ca.server_context(HOST, "impostor"), require_starttls=True)
    s.start()
    yield s
    s.stop()


def _mailer(sink: MailSink, tls: str, ca_file: Path | None, **extra: Any) -> Mailer:
    config = EmailConfig(enabled=True, smtp_host=HOST, smtp_port=sink.port, tls=tls, timeout_s=10,
                         from_address="Accord <noreply@test.local>", **extra)
    return Mailer(config, None, str(ca_file) if ca_file else None)


async def _send(mailer: Mailer, to: str, body: str) -> None:
    await mailer.send(mailer.message(to, Rendered(f"About {body}", f"plain {body}", f"<p>html {body}</p>")))


async def test_implicit_tls(tls_sink: MailSink, ca: TestCA) -> None:
    before = len(tls_sink.mails)
    await _send(_mailer(tls_sink, "tls", ca.ca_path), "bob@example.org", "implicit TLS")
    mail = (await tls_sink.wait_for(before + 1))[-1]
    assert mail["To"] == "bob@example.org" and mail["Subject"] == "About implicit TLS"
    assert text_of(mail).strip() == "plain implicit TLS" and "<p>html implicit TLS</p>" in html_of(mail)
    assert tls_sink.sessions[-1] == (None, True)
    # Only the system's trust store: the test CA is not in it, so the server is refused.
    with pytest.raises(MailError, match="SSL|certificate"):
        await _send(_mailer(tls_sink, "tls", None), "bob@example.org", "never")
    assert len(tls_sink.mails) == before + 1


async def test_starttls_with_auth(starttls_sink: MailSink, ca: TestCA, passwords: Passwords) -> None:
    before = len(starttls_sink.mails)
    mailer = _mailer(starttls_sink, "starttls", ca.ca_path, smtp_user="accord", smtp_password="relay secret")
    await _send(mailer, "carol@example.org", "STARTTLS")
    mail = (await starttls_sink.wait_for(before + 1))[-1]
    assert mail["To"] == "carol@example.org" and text_of(mail).strip() == "plain STARTTLS"
    assert starttls_sink.sessions[-1] == ("accord", True)
    assert starttls_sink.envelopes[-1] == ("noreply@test.local", ["carol@example.org"])

    refused = passwords.refused
    wrong = _mailer(starttls_sink, "starttls", ca.ca_path, smtp_user="accord", smtp_password="guess")
    with pytest.raises(MailError, match="SMTPAuthenticationError"):
        await _send(wrong, "carol@example.org", "wrong password")
    assert passwords.refused == refused + 1
    # Plain SMTP against a server that demands STARTTLS: refused, nothing sent in clear.
    with pytest.raises(MailError):
        await _send(_mailer(starttls_sink, "none", None), "carol@example.org", "in clear")
    assert len(starttls_sink.mails) == before + 1


async def test_untrusted_certificate_is_refused(untrusted_sink: MailSink, ca: TestCA, other_ca: TestCA) -> None:
    with pytest.raises(MailError, match="SSL|certificate"):
        await _send(_mailer(untrusted_sink, "starttls", ca.ca_path), "dan@example.org", "impostor")
    assert untrusted_sink.mails == []
    # The same server, its CA trusted: accepted (the refusal above was the certificate).
    await _send(_mailer(untrusted_sink, "starttls", other_ca.ca_path), "dan@example.org", "trusted")
    assert [m["Subject"] for m in await untrusted_sink.wait_for(1)] == ["About trusted"]


def test_smtp_ca_file_is_checked(tmp_path: Path, ca: TestCA) -> None:
    def check(ca_file: str) -> None:
        parse_config(config_dict(tmp_path, email={"smtp_ca_file": ca_file}))

    check(str(ca.ca_path))
    with pytest.raises(ConfigError, match="email.smtp_ca_file.*not found"):
        check(str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="email.smtp_ca_file.*PEM"):
        check(str(junk))


async def test_email_pusher_through_starttls_waits_out_a_refused_password(
    make_api: Any, starttls_sink: MailSink, ca: TestCA, passwords: Passwords, caplog: pytest.LogCaptureFixture,
) -> None:
    """The homeserver's own mail path over STARTTLS + AUTH: the relay's password
    changes, the unread-message mail is logged as failed and kept; once the relay
    accepts us again the same mail goes out, once."""
    api = await make_api(**email_config(
        starttls_sink, tls="starttls", smtp_ca_file=str(ca.ca_path), smtp_user="accord",
        smtp_password="relay secret", notif_delay_s=0,
    ))
    alice, bob = await user(api, "alice"), await user(api, "bob")
    await add_email(api, starttls_sink, bob, "bob", "bob@example.org")
    await api.post("pushers/set", {
        "kind": "email", "app_id": "m.email", "pushkey": "bob@example.org", "app_display_name": "Mail",
        "device_display_name": "Mail", "lang": "en", "data": {}}, token=bob)
    room = (await api.post("createRoom", {"preset": "public_chat", "name": "Night shift"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    before, refused = len(starttls_sink.mails), passwords.refused
    passwords.password = "rotated"
    try:
        with caplog.at_level(logging.WARNING, logger="homeserver.email.notifier"):
            await send(api, room, alice, "are you awake?")
            for _ in range(600):  # until two rounds of the notifier were refused
                if passwords.refused >= refused + 2:
                    break
                await asyncio.sleep(0.05)
        assert passwords.refused >= refused + 2
        assert "SMTPAuthenticationError" in caplog.text and "trying again" in caplog.text
        assert len(starttls_sink.mails) == before
    finally:
        passwords.password = "relay secret"
    mail = (await starttls_sink.wait_for(before + 1))[-1]
    assert mail["To"] == "bob@example.org" and "are you awake?" in text_of(mail)
    assert starttls_sink.sessions[-1] == ("accord", True)
    await asyncio.sleep(0.3)  # a few more rounds: the mail is not sent twice
    assert len(starttls_sink.mails) == before + 1


def test_context_keeps_verification_on(ca: TestCA) -> None:
    ctx = Mailer(EmailConfig(tls="tls"), None, str(ca.ca_path)).tls_context
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
