"""E-mail: SMTP delivery with templated mails, e-mail addresses on accounts, and
e-mail pushers."""
