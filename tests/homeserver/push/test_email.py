"""E-mail against a real SMTP server on loopback (aiosmtpd): validating an address
on the account by the link in the mail, e-mail pushers mailing what is still
unread after the delay (grouped per room, room links, an unsubscribe link that
works without logging in), and display names that try to inject headers."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Api, FakeClock, password_auth
from tests.homeserver.api.reading_helpers import send, uid, user
from tests.homeserver.push.gateway import _free_port
from tests.homeserver.push.smtp import MailSink, html_of, links, text_of

BASE = "https://accord.test.local"


@pytest.fixture
async def sink() -> AsyncIterator[MailSink]:
    s = MailSink()
    s.start()
    yield s
    s.stop()


def email_config(sink: MailSink, **extra: Any) -> dict[str, Any]:
    return {"email": {
        "enabled": True, "smtp_host": "127.0.0.1", "smtp_port": sink.port, "tls": "none",
        "from_address": "Accord <noreply@test.local>", "public_baseurl": BASE, "app_name": "Accord Test",
        "notif_check_s": 0.1, **extra,
    }}


async def _follow(api: Api, link: str, method: str = "GET") -> tuple[int, str]:
    """A link from a mail, opened on the test server (the public base URL stands for it)."""
    assert link.startswith(BASE)
    parts = urlsplit(link)
    async with api.client.request(method, parts.path + ("?" + parts.query if parts.query else "")) as resp:
        return resp.status, await resp.text()


async def add_email(api: Api, sink: MailSink, token: str, name: str, address: str) -> None:
    before = len(sink.mails)
    got = await api.post("account/3pid/email/requestToken",
                         {"client_secret": "secret-1", "email": address, "send_attempt": 1})
    sid = got["sid"]
    # Adding before the link is followed fails.
    body = {"client_secret": "secret-1", "sid": sid}
    _, challenge = await api.request("POST", "account/3pid/add", body, token=token, expect=401)
    auth = password_auth(challenge["session"], name)
    _, err = await api.request("POST", "account/3pid/add", {**body, "auth": auth}, token=token, expect=400)
    assert err["errcode"] == "M_THREEPID_AUTH_FAILED"
    mail = (await sink.wait_for(before + 1))[-1]
    assert mail["To"] == address.lower() and "Confirm" in mail["Subject"]
    (link,) = [x for x in links(text_of(mail)) if "submit_token" in x]
    assert html.escape(link) in html_of(mail)
    status, page = await _follow(api, link)
    assert status == 200 and "confirmed" in page
    _, challenge = await api.request("POST", "account/3pid/add", body, token=token, expect=401)
    await api.post("account/3pid/add", {**body, "auth": password_auth(challenge["session"], name)}, token=token)


async def test_address_validation_and_3pid_endpoints(make_api: Any, sink: MailSink) -> None:
    api = await make_api(**email_config(sink))
    bob = await user(api, "bob")
    caps = (await api.get("capabilities", token=bob))["capabilities"]
    assert caps["m.3pid_changes"] == {"enabled": True}
    await add_email(api, sink, bob, "bob", "Bob@Example.org")
    (entry,) = (await api.get("account/3pid", token=bob))["threepids"]
    assert entry["medium"] == "email" and entry["address"] == "bob@example.org"
    # The same address for someone else: in use.
    _, err = await api.request("POST", "account/3pid/email/requestToken",
                               {"client_secret": "x", "email": "bob@example.org", "send_attempt": 1}, expect=400)
    assert err["errcode"] == "M_THREEPID_IN_USE"
    # A forged token opens nothing.
    status, _ = await _follow(api, f"{BASE}/_accord/client/email/submit_token?sid=a&client_secret=b&token=c")
    assert status == 400
    assert (await api.post("account/3pid/delete", {"medium": "email", "address": "bob@example.org"}, token=bob)) == {
        "id_server_unbind_result": "no-support"}
    assert (await api.get("account/3pid", token=bob))["threepids"] == []


@pytest.mark.parametrize(("body", "errcode"), [
    ({"client_secret": "s", "email": "not an address", "send_attempt": 1}, "M_INVALID_PARAM"),
    ({"client_secret": "s", "email": "a@b.c\r\nBcc: x@y.z", "send_attempt": 1}, "M_INVALID_PARAM"),
    ({"client_secret": "bad secret!", "email": "a@b.org", "send_attempt": 1}, "M_INVALID_PARAM"),
    ({"client_secret": "s", "email": "a@b.org"}, "M_MISSING_PARAM"),
    ({"client_secret": "s", "email": "a@b.org", "send_attempt": "1"}, "M_INVALID_PARAM"),
    ({"client_secret": "s", "email": 5, "send_attempt": 1}, "M_BAD_JSON"),
])
async def test_bad_token_requests(make_api: Any, sink: MailSink, body: dict[str, Any], errcode: str) -> None:
    api = await make_api(**email_config(sink))
    _, err = await api.request("POST", "account/3pid/email/requestToken", body, expect=400)
    assert err["errcode"] == errcode
    assert sink.mails == []


async def test_mail_relay_down_is_a_retryable_503(make_api: Any, sink: MailSink) -> None:
    """A relay that refuses the mail or cannot be reached is the mail server's failure,
    not ours: 503, and the same send_attempt mails once the relay takes it."""
    api = await make_api(**email_config(sink))
    body = {"client_secret": "secret-1", "email": "bob@example.org", "send_attempt": 1}
    sink.refuse = True
    _, err = await api.request("POST", "account/3pid/email/requestToken", body, expect=503)
    assert err["errcode"] == "M_UNKNOWN" and "try again" in err["error"]
    sink.refuse = False
    sid = (await api.post("account/3pid/email/requestToken", body))["sid"]
    mail = (await sink.wait_for(1))[-1]
    assert mail["To"] == "bob@example.org" and sid in text_of(mail)
    nobody = await make_api(**email_config(sink, smtp_port=_free_port("127.0.0.1")))
    _, err = await nobody.request(
        "POST", "account/3pid/email/requestToken", {**body, "email": "carol@example.org"}, expect=503
    )
    assert err["errcode"] == "M_UNKNOWN"


async def test_without_email_configured(api: Api) -> None:
    bob = await user(api, "bob")
    _, err = await api.request("POST", "account/3pid/email/requestToken",
                               {"client_secret": "s", "email": "a@b.org", "send_attempt": 1}, expect=400)
    assert err["errcode"] == "M_THREEPID_MEDIUM_NOT_SUPPORTED"
    assert (await api.get("capabilities", token=bob))["capabilities"]["m.3pid_changes"] == {"enabled": False}


async def test_email_pusher_mails_unread_after_the_delay(db_overrides: dict[str, Any], make_api: Any, sink: MailSink, clock: FakeClock) -> None:
    api = await make_api(clock=clock, **db_overrides, **email_config(sink, notif_delay_s=600))
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    await add_email(api, sink, bob, "bob", "bob@example.org")
    mails_before = len(sink.mails)
    # Not an address of bob's: refused.
    body = {"kind": "email", "app_id": "m.email", "pushkey": "someone@else.org", "app_display_name": "Mail",
            "device_display_name": "Mail", "lang": "en", "data": {}}
    _, err = await api.request("POST", "pushers/set", body, token=bob, expect=400)
    assert err["errcode"] == "M_THREEPID_NOT_FOUND"
    await api.post("pushers/set", {**body, "pushkey": "bob@example.org"}, token=bob)

    # Carol's display name tries to add a header.
    await api.put(f"profile/{uid('carol')}/displayname", {"displayname": "Carol\r\nBcc: evil@attacker.org"},
                  token=carol)
    ops = (await api.post("createRoom", {"preset": "public_chat", "name": "Ops <b>room</b>"}, token=alice))["room_id"]
    clock.advance(1)  # a v12 room's ID is its create event's: not two in the same millisecond
    chat = (await api.post("createRoom", {"preset": "public_chat", "name": "Chat"}, token=alice))["room_id"]
    for room in (ops, chat):
        await api.post(f"rooms/{room}/join", {}, token=bob)
        await api.post(f"rooms/{room}/join", {}, token=carol)
    await send(api, ops, carol, "the server is on fire <script>")
    await send(api, chat, alice, "lunch?")
    read = await send(api, chat, alice, "read this one")
    await api.post(f"rooms/{chat}/receipt/m.read/{read}", {}, token=bob)  # chat: all read
    await send(api, ops, alice, "still burning")

    await asyncio.sleep(1.0)  # several rounds of the notifier: nothing is due yet
    assert len(sink.mails) == mails_before
    clock.advance(601_000)
    mail = (await sink.wait_for(mails_before + 1))[-1]
    assert mail["To"] == "bob@example.org"
    assert "Bcc" not in mail and "\n" not in mail["Subject"] and "Carol" in mail["Subject"]
    assert "Ops <b>room</b>" in mail["Subject"]
    text = text_of(mail)
    assert "the server is on fire <script>" in text and "still burning" in text
    assert "lunch?" not in text  # read before the delay passed
    page = html_of(mail)
    assert "&lt;script&gt;" in page and "<script>" not in page and "Ops &lt;b&gt;room&lt;/b&gt;" in page
    assert f"https://matrix.to/#/{ops.replace('!', '%21').replace(':', '%3A')}" in text
    (unsubscribe,) = [x for x in links(text) if "unsubscribe" in x]
    assert mail["List-Unsubscribe"] == f"<{unsubscribe}>"

    # Nothing new: no second mail. Then the unsubscribe link (no login): GET asks, POST does.
    await asyncio.sleep(0.6)
    assert len(sink.mails) == mails_before + 1
    status, page = await _follow(api, unsubscribe)
    assert status == 200 and "<form" in page
    assert len((await api.get("pushers", token=bob))["pushers"]) == 1
    status, _ = await _follow(api, unsubscribe + "0", "POST")
    assert status == 400
    status, page = await _follow(api, unsubscribe, "POST")
    assert status == 200 and "no longer" in page
    assert (await api.get("pushers", token=bob))["pushers"] == []


async def test_password_reset_by_email(db_overrides: dict[str, Any], make_api: Any, sink: MailSink) -> None:
    api = await make_api(**db_overrides, **email_config(sink))
    bob = await user(api, "bob")
    await add_email(api, sink, bob, "bob", "bob@example.org")
    _, err = await api.request("POST", "account/password/email/requestToken",
                               {"client_secret": "r1", "email": "nobody@example.org", "send_attempt": 1}, expect=400)
    assert err["errcode"] == "M_THREEPID_NOT_FOUND"
    before = len(sink.mails)
    sid = (await api.post("account/password/email/requestToken",
                          {"client_secret": "r1", "email": "BOB@example.org", "send_attempt": 1}))["sid"]
    mail = (await sink.wait_for(before + 1))[-1]
    assert "Reset" in mail["Subject"] and mail["To"] == "bob@example.org"
    body: dict[str, Any] = {"new_password": "a brand new password 1"}
    _, challenge = await api.request("POST", "account/password", body, expect=401)
    assert challenge["flows"] == [{"stages": ["m.login.email.identity"]}]
    auth = {"type": "m.login.email.identity", "threepid_creds": {"sid": sid, "client_secret": "r1"},
            "session": challenge["session"]}
    # Before the link in the mail is followed, the stage fails.
    _, failed = await api.request("POST", "account/password", {**body, "auth": auth}, expect=401)
    assert failed["errcode"] == "M_FORBIDDEN"
    (link,) = [x for x in links(text_of(mail)) if "submit_token" in x]
    assert (await _follow(api, link))[0] == 200
    await api.post("account/password", {**body, "auth": auth})
    # Every session ended; the new password logs in, the old one does not.
    assert (await api.request("GET", "account/whoami", token=bob, expect=None))[0] == 401
    await api.login("bob", "a brand new password 1")
    status, _ = await api.request("POST", "login", {"type": "m.login.password", "identifier": {
        "type": "m.id.user", "user": "bob"}, "password": "wrong"}, expect=None)
    assert status == 403
    # The validated session proved one reset; it cannot prove another.
    _, challenge = await api.request("POST", "account/password", body, expect=401)
    auth["session"] = challenge["session"]
    _, again = await api.request("POST", "account/password", {**body, "auth": auth}, expect=401)
    assert again["errcode"] == "M_FORBIDDEN"


def test_digest_periods() -> None:
    from homeserver.email.notifier import digest_period_start

    tue_2213 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC, a Tuesday
    assert digest_period_start(tue_2213, "daily", 8, 0) == 1_699_948_800_000  # Tuesday 08:00
    assert digest_period_start(tue_2213, "daily", 23, 0) == 1_699_916_400_000  # Monday 23:00
    assert digest_period_start(tue_2213, "weekly", 8, 0) == 1_699_862_400_000  # Monday 08:00
    assert digest_period_start(tue_2213, "weekly", 8, 1) == 1_699_948_800_000  # Tuesday 08:00


@pytest.mark.parametrize(("choice", "subject", "line", "html_line"), [
    ({}, "daily summary", "Planning: 2 unread", "</a>: 2 unread"),
    ({"language": "de-AT"}, "tägliche Zusammenfassung", "Planning: 2 ungelesen", "</a>: 2 ungelesen"),
])
async def test_daily_digest_at_the_configured_hour(
    make_api: Any, sink: MailSink, clock: FakeClock, choice: dict[str, str], subject: str, line: str,
    html_line: str,
) -> None:
    api = await make_api(clock=clock, **email_config(sink, digest_hour=8))
    alice, bob = await user(api, "alice"), await user(api, "bob")
    await add_email(api, sink, bob, "bob", "bob@example.org")
    await api.put(f"user/{uid('bob')}/account_data/org.accord.digest", {"frequency": "daily", **choice}, token=bob)
    room = (await api.post("createRoom", {"preset": "public_chat", "name": "Planning"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await api.post(f"rooms/{room}/join", {}, token=await user(api, "carol"))
    await send(api, room, alice, "agenda")
    await send(api, room, alice, "minutes")
    before = len(sink.mails)
    await asyncio.sleep(0.5)  # the choice is seen; it is 22:13, the next digest is at 08:00
    assert len(sink.mails) == before
    clock.advance(10 * 3600 * 1000)
    mail = (await sink.wait_for(before + 1))[-1]
    assert mail["To"] == "bob@example.org" and subject in mail["Subject"]
    assert line in text_of(mail) and html_line in html_of(mail)
    clock.advance(3600 * 1000)
    await asyncio.sleep(0.5)
    assert len(sink.mails) == before + 1  # one per day


async def test_registration_with_a_required_email(make_api: Any, sink: MailSink) -> None:
    api = await make_api(registration={"policy": "open", "email": "required"}, **email_config(sink))
    body: dict[str, Any] = {"username": "dora", "password": "dora's password 1"}
    _, challenge = await api.request("POST", "register", body, expect=401)
    assert challenge["flows"] == [{"stages": ["m.login.email.identity"]}]
    sid = (await api.post("register/email/requestToken",
                          {"client_secret": "reg1", "email": "dora@example.org", "send_attempt": 1}))["sid"]
    (link,) = [x for x in links(text_of(await _last_mail(sink))) if "submit_token" in x]
    auth = {"type": "m.login.email.identity", "threepid_creds": {"sid": sid, "client_secret": "reg1"},
            "session": challenge["session"]}
    _, failed = await api.request("POST", "register", {**body, "auth": auth}, expect=401)  # not followed yet
    assert failed["errcode"] == "M_FORBIDDEN"
    assert (await _follow(api, link))[0] == 200
    done = await api.post("register", {**body, "auth": auth})
    (entry,) = (await api.get("account/3pid", token=done["access_token"]))["threepids"]
    assert entry["address"] == "dora@example.org"
    # The address is taken now.
    _, err = await api.request("POST", "register/email/requestToken",
                               {"client_secret": "reg2", "email": "dora@example.org", "send_attempt": 1}, expect=400)
    assert err["errcode"] == "M_THREEPID_IN_USE"


async def test_registration_email_optional_and_off(make_api: Any, sink: MailSink) -> None:
    api = await make_api(registration={"policy": "open", "email": "optional"}, **email_config(sink))
    _, challenge = await api.request("POST", "register", {"username": "eve", "password": "eve's password 1"},
                                     expect=401)
    assert challenge["flows"] == [{"stages": ["m.login.dummy"]}, {"stages": ["m.login.email.identity"]}]
    off = await make_api(**email_config(sink))
    _, err = await off.request("POST", "register/email/requestToken",
                               {"client_secret": "x", "email": "a@b.org", "send_attempt": 1}, expect=400)
    assert err["errcode"] == "M_THREEPID_MEDIUM_NOT_SUPPORTED"


async def _last_mail(sink: MailSink) -> Any:
    return (await sink.wait_for(len(sink.mails) or 1))[-1]


async def test_deactivation_frees_the_address(make_api: Any, sink: MailSink) -> None:
    api = await make_api(**email_config(sink))
    bob = await user(api, "bob")
    await add_email(api, sink, bob, "bob", "bob@example.org")
    body: dict[str, Any] = {}
    _, challenge = await api.request("POST", "account/deactivate", body, token=bob, expect=401)
    await api.post("account/deactivate", {"auth": password_auth(challenge["session"], "bob")}, token=bob)
    sid = (await api.post("account/3pid/email/requestToken",
                          {"client_secret": "again", "email": "bob@example.org", "send_attempt": 1}))["sid"]
    assert sid


async def test_unread_mail_in_the_language_the_user_chose(make_api: Any, sink: MailSink) -> None:
    """The account-data choice wins over the pusher's lang, which wins over the
    configured default; the mail (subject, text, HTML) is the shipped German one."""
    api = await make_api(**email_config(sink, notif_delay_s=0, language="fr"))
    alice, bob = await user(api, "alice"), await user(api, "bob")
    await add_email(api, sink, bob, "bob", "bob@example.org")
    await api.put(f"user/{uid('bob')}/account_data/org.accord.digest", {"language": "de"}, token=bob)
    await api.post("pushers/set", {
        "kind": "email", "app_id": "m.email", "pushkey": "bob@example.org", "app_display_name": "Mail",
        "device_display_name": "Mail", "lang": "en-GB", "data": {}}, token=bob)
    room = (await api.post("createRoom", {"preset": "public_chat", "name": "Werkstatt"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    before = len(sink.mails)
    await send(api, room, alice, "Feierabend?")
    mail = (await sink.wait_for(before + 1))[-1]
    assert mail["Subject"] == "Accord Test: alice in Werkstatt"
    text = text_of(mail)
    assert text.startswith("Sie haben ungelesene Nachrichten auf Accord Test.") and "alice: Feierabend?" in text
    assert "Um diese E-Mails abzubestellen" in text
    assert '<html lang="de">' in html_of(mail) and "Diese E-Mails abbestellen" in html_of(mail)
    # Choice withdrawn: the pusher's lang (English) applies, not the default (no French shipped anyway).
    await api.put(f"user/{uid('bob')}/account_data/org.accord.digest", {}, token=bob)
    await send(api, room, alice, "hello?")
    mail = (await sink.wait_for(before + 2))[-1]
    assert text_of(mail).startswith("You have unread messages on Accord Test.")
    # An invitation is mailed too (bob is not in the room yet), worded as one.
    garage = (await api.post("createRoom", {"name": "Garage", "invite": [uid("bob")]}, token=alice))["room_id"]
    mail = (await sink.wait_for(before + 3))[-1]
    assert mail["Subject"] == "Accord Test: alice in Garage"
    assert "alice: invited you to join" in text_of(mail) and garage.replace("!", "%21").split(":")[0] in text_of(mail)
    assert "<b>alice</b>: invited you to join" in html_of(mail)


def test_language_chain_and_hostile_tags(tmp_path: Path) -> None:
    from homeserver.config import EmailConfig
    from homeserver.email.mailer import Mailer

    de_default = Mailer(EmailConfig(language="de"), None)
    assert de_default.languages() == ["de"]
    assert de_default.languages("pt_BR", "en") == ["pt-br", "pt", "en"]
    assert de_default.languages("pt_BR") == ["pt-br", "pt", "de"]
    assert de_default.languages("en-GB") == ["en-gb", "en"]  # English chosen: the chain ends there
    for hostile in ("../../etc", "de/../../x", "de\nBcc: x", "", 5, None, "d" * 40):
        assert de_default.languages(hostile) == ["de"]
    mail = de_default.render("validate", address="a@b.org", link="https://x/y")
    assert mail.subject == "Bestätigen Sie Ihre E-Mail-Adresse für Accord" and "https://x/y" in mail.text
    notif = de_default.render("notif", rooms=[{"name": "R", "link": "https://l", "messages": [
        {"sender": "a<b>", "kind": "invite", "body": ""}, {"sender": "c", "kind": "message", "body": "x <i>"}]}],
        unsubscribe="https://u", senders=["a<b>"], room="R", others=0)
    assert "a<b>: hat Sie eingeladen" in notif.text and "c: x <i>" in notif.text
    assert "<b>a&lt;b&gt;</b>: hat Sie eingeladen" in notif.html and "x &lt;i&gt;" in notif.html
    # A template directory that translates only the subject into French: the rest falls back.
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "validate.subject").write_text("Confirmez votre adresse pour {{ app_name }}\n")
    mixed = Mailer(EmailConfig(language="fr"), str(tmp_path)).render("validate", address="a@b.org", link="l")
    assert mixed.subject == "Confirmez votre adresse pour Accord" and mixed.text.startswith("You asked")


async def test_validation_and_reset_mails_and_pages_in_the_asked_language(make_api: Any, sink: MailSink) -> None:
    """Mails asked for over HTTP follow the request's Accept-Language (a password
    reset first follows the account's own choice), and the pages the links open
    follow the browser's."""
    api = await make_api(**email_config(sink))
    body = {"client_secret": "s-1", "email": "bob@example.org", "send_attempt": 1}
    german = {"Accept-Language": "fr-CH;q=0.3, de-AT, en;q=0.1"}
    await api.post("account/3pid/email/requestToken", body, headers=german)
    mail = (await sink.wait_for(1))[-1]
    assert mail["Subject"] == "Bestätigen Sie Ihre E-Mail-Adresse für Accord Test"
    (link,) = [x for x in links(text_of(mail)) if "submit_token" in x]
    parts = urlsplit(link)
    async with api.client.get(f"{parts.path}?{parts.query}", headers=german) as resp:
        page = await resp.text()
        assert resp.status == 200 and '<html lang="de">' in page and "Ihre E-Mail-Adresse ist bestätigt" in page
    async with api.client.get(f"{parts.path}?{parts.query}x", headers={"Accept-Language": "en-US"}) as resp:
        assert resp.status == 400 and "This link is not valid" in await resp.text()

    # The reset mail of an account whose owner chose German, whatever the request asks.
    bob = await user(api, "bob")
    await add_email(api, sink, bob, "bob", "carol@example.org")
    await api.put(f"user/{uid('bob')}/account_data/org.accord.digest", {"language": "de"}, token=bob)
    before = len(sink.mails)
    await api.post("account/password/email/requestToken",
                   {"client_secret": "r1", "email": "carol@example.org", "send_attempt": 1},
                   headers={"Accept-Language": "en"})
    mail = (await sink.wait_for(before + 1))[-1]
    assert mail["Subject"] == "Passwort für Accord Test zurücksetzen"


def test_accept_language_parsing() -> None:
    from homeserver.email.languages import accepted_languages

    assert accepted_languages("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5") == ["fr-ch", "fr", "en", "de"]
    assert accepted_languages("de;q=0.5, en") == ["en", "de"]
    assert accepted_languages("de;q=0, en;q=x, ../x, it") == ["it"]
    assert accepted_languages(None) == [] and accepted_languages("") == []
    assert len(accepted_languages(",".join(["de"] * 1000))) == 5
