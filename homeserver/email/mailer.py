"""Rendering and sending mails: Jinja2 templates (HTML autoescaped, plus plain text)
from the package or `email.template_dir`, sent over SMTP with aiosmtplib.

Headers are built with the standard library's SMTP policy, which refuses line
breaks in header values; text that users choose (display names, room names) is
also stripped of control characters before it reaches a Subject, so no one can
inject headers through their name.
"""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from homeserver.config import EmailConfig

if TYPE_CHECKING:
    import jinja2

logger = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MAX_HEADER_TEXT = 200


class MailError(Exception):
    """The SMTP server could not be reached or refused the mail."""


def header_text(value: str) -> str:
    """User-chosen text made safe and short for a header: control characters
    (line breaks included) become spaces."""
    cleaned = _CONTROL.sub(" ", value).strip()
    return cleaned[:_MAX_HEADER_TEXT]


class Mailer:
    def __init__(self, config: EmailConfig, template_dir: str | None) -> None:
        # Imported here, not at the top: a server without e-mail never loads Jinja2
        # (about 2 MB of resident memory for nothing).
        import jinja2

        self.config = config
        loaders: list[jinja2.BaseLoader] = []
        if template_dir is not None:
            loaders.append(jinja2.FileSystemLoader(template_dir))
        loaders.append(jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
        )

    def render(self, name: str, **context: Any) -> tuple[str, str]:
        """(plain text, HTML) of the template pair `name`.txt / `name`.html."""
        context = {"app_name": self.config.app_name, **context}
        return (
            self.env.get_template(f"{name}.txt").render(**context),
            self.env.get_template(f"{name}.html").render(**context),
        )

    def page(self, message: str, *, form_action: str | None = None, button: str = "") -> str:
        """A small HTML page for the links in mails (validation, unsubscribing)."""
        return self.env.get_template("page.html").render(
            app_name=self.config.app_name, message=message, form_action=form_action, button=button,
        )

    def message(
        self, to: str, subject: str, text: str, html: str, headers: dict[str, str] | None = None
    ) -> EmailMessage:
        msg = EmailMessage(policy=SMTP)
        msg["From"] = self.config.from_address
        msg["To"] = to
        msg["Subject"] = header_text(subject)
        msg["Date"] = formatdate(localtime=False)
        domain = parseaddr(self.config.from_address)[1].rpartition("@")[2] or None
        msg["Message-ID"] = make_msgid(domain=domain)
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        return msg

    async def send(self, msg: EmailMessage) -> None:
        import aiosmtplib  # loaded with the first mail, not at start-up

        cfg = self.config
        try:
            await aiosmtplib.send(
                msg, hostname=cfg.smtp_host, port=cfg.smtp_port, username=cfg.smtp_user,
                password=cfg.smtp_password, use_tls=cfg.tls == "tls", start_tls=cfg.tls == "starttls",
                timeout=cfg.timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise MailError(f"{type(exc).__name__}: {exc}") from exc
