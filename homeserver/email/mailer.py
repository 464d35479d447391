"""Rendering and sending mails: Jinja2 templates (HTML autoescaped, plus plain text
and a one-line subject) from the package or `email.template_dir`, sent over SMTP with
aiosmtplib.

Mails are localised by directory: `<lang>/notif.txt` beside the English `notif.txt`
(the package ships `de/`). A mail is rendered in the first language of: the
user's choice (`language` in their `org.accord.digest` account data; for a mail
asked for over HTTP, the request's Accept-Language: see `languages.accepted_languages`),
`email.language`, English; each template is looked up along that chain, so a
translation may cover only some mails. The pages the mails' links open follow the
browser's Accept-Language the same way (`pages.txt` holds their sentences).

Headers are built with the standard library's SMTP policy, which refuses line
breaks in header values; text that users choose (display names, room names) is
also stripped of control characters before it reaches a Subject, so no one can
inject headers through their name.
"""

from __future__ import annotations

import logging
import re
import ssl
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from homeserver.config import EmailConfig
from homeserver.email.languages import language_tag

if TYPE_CHECKING:
    import jinja2

logger = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
LANGUAGE_KEY = "language"  # in the global account data of e-mail choices (notifier.DIGEST_TYPE)
_MAX_HEADER_TEXT = 200


class MailError(Exception):
    """The SMTP server could not be reached or refused the mail."""


def header_text(value: str) -> str:
    """User-chosen text made safe and short for a header: control characters
    (line breaks included) become spaces."""
    cleaned = _CONTROL.sub(" ", value).strip()
    return cleaned[:_MAX_HEADER_TEXT]


def smtp_tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The context the SMTP server's certificate is checked with (both `tls` and
    `starttls`): the system's trust store, plus `email.smtp_ca_file` for a relay under
    a private CA. Verification and hostname checks are never turned off, so a relay's
    address in config cannot be answered by someone else."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


class Rendered(NamedTuple):
    subject: str
    text: str
    html: str


class Mailer:
    def __init__(self, config: EmailConfig, template_dir: str | None, ca_file: str | None = None) -> None:
        # Imported here, not at the top: a server without e-mail never loads Jinja2
        # (about 2 MB of resident memory for nothing).
        import jinja2

        self.config = config
        self.tls_context = smtp_tls_context(ca_file)
        loaders: list[jinja2.BaseLoader] = []
        if template_dir is not None:
            loaders.append(jinja2.FileSystemLoader(template_dir))
        loaders.append(jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
        )

    def languages(self, *preferred: str | None) -> list[str]:
        """The directories a mail's templates are looked for in, best first: each
        preferred tag (then its primary language: "de" for "de-at"), then the
        configured default; the English templates at the top level come last. A
        choice of English ends the chain there: the top level is English."""
        out: list[str] = []
        for value in (*preferred, self.config.language):
            tag = language_tag(value)
            if tag is None:
                continue
            primary = tag.split("-")[0]
            for code in (tag, primary):
                if code not in out:
                    out.append(code)
            if primary == "en":
                break
        return out

    def render(self, name: str, languages: list[str] | None = None, **context: Any) -> Rendered:
        """Subject, plain text and HTML of `name` (`name`.subject, .txt, .html), each
        from the first language in `languages` (default: the configured one) that has it."""
        chain = self.languages() if languages is None else languages

        def part(template: str) -> list[str]:
            """Where a template is looked for, in order: a mail's pieces (`_message.txt`)
            follow the same language chain as the mail."""
            return [f"{code}/{template}" for code in chain] + [template]

        def described(message: dict[str, str]) -> str:
            """One event of a notification mail in words (`_message.txt`, plain text:
            the HTML template escapes what this returns, like any other value)."""
            return self.env.select_template(part("_message.txt")).render(m=message)

        context = {"app_name": self.config.app_name, "described": described, **context}

        def get(ext: str) -> jinja2.Template:
            return self.env.select_template(part(f"{name}.{ext}"))

        return Rendered(
            " ".join(get("subject").render(**context).split()),
            get("txt").render(**context),
            get("html").render(**context),
        )

    def page(self, key: str, languages: list[str], *, form_action: str | None = None, button: str = "") -> str:
        """A small HTML page for the links in mails (validation, unsubscribing): the
        sentence `key` of `pages.txt` (and the button's, `button` naming it), in the
        first of `languages` that has the file."""
        chain = self.languages(*languages)
        sentences = self.env.select_template([f"{code}/pages.txt" for code in chain] + ["pages.txt"])
        name = sentences.name or ""
        lang = name.split("/")[0] if "/" in name else "en"

        def say(name: str) -> str:
            return sentences.render(key=name, app_name=self.config.app_name).strip()

        return self.env.get_template("page.html").render(
            app_name=self.config.app_name, message=say(key), form_action=form_action,
            button=say(button) if button else "", lang=lang,
        )

    def message(self, to: str, mail: Rendered, headers: dict[str, str] | None = None) -> EmailMessage:
        msg = EmailMessage(policy=SMTP)
        msg["From"] = self.config.from_address
        msg["To"] = to
        msg["Subject"] = header_text(mail.subject)
        msg["Date"] = formatdate(localtime=False)
        domain = parseaddr(self.config.from_address)[1].rpartition("@")[2] or None
        msg["Message-ID"] = make_msgid(domain=domain)
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(mail.text)
        msg.add_alternative(mail.html, subtype="html")
        return msg

    async def send(self, msg: EmailMessage) -> None:
        import aiosmtplib  # loaded with the first mail, not at start-up

        cfg = self.config
        try:
            await aiosmtplib.send(
                msg, hostname=cfg.smtp_host, port=cfg.smtp_port, username=cfg.smtp_user,
                password=cfg.smtp_password, use_tls=cfg.tls == "tls", start_tls=cfg.tls == "starttls",
                tls_context=self.tls_context if cfg.tls != "none" else None, timeout=cfg.timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise MailError(f"{type(exc).__name__}: {exc}") from exc
