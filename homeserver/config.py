"""Configuration: typed sections, strict loading, and the commented example file.

The dataclasses below are the single source of truth: loading validates a YAML
document against them (unknown keys, wrong types and bad choices are refused with
the offending key named), and `render_example` writes the documented config file
from the same fields, so the example can never drift from what the server accepts.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml


class ConfigError(Exception):
    """A config problem, phrased as one line naming the key."""


def _doc(text: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"doc": text, "choices": choices}


RESOURCES = ("client", "federation", "keys", "media", "admin", "metrics")
# Resources a listener may name that have nothing behind them yet: accepted, so existing
# configs keep loading, and warned about at start (HomeServer.build_app).
UNSERVED_RESOURCES: dict[str, str] = {}


@dataclass(frozen=True)
class ListenerConfig:
    port: int = field(default=8008, metadata=_doc("TCP port to listen on."))
    bind_addresses: list[str] = field(
        default_factory=lambda: ["127.0.0.1"],
        metadata=_doc("Addresses to bind; use '::' or '0.0.0.0' for all interfaces."),
    )
    tls: bool = field(default=False, metadata=_doc("Serve HTTPS on this listener."))
    tls_certificate_path: str | None = field(
        default=None, metadata=_doc("PEM certificate chain (required when tls is true).")
    )
    tls_private_key_path: str | None = field(
        default=None, metadata=_doc("PEM private key (required when tls is true).")
    )
    resources: list[str] = field(
        default_factory=lambda: ["client"],
        metadata=_doc(
            "APIs served here, any of: "
            + ", ".join(r for r in RESOURCES if r not in UNSERVED_RESOURCES)
            + "; metrics is served only where named (it tells anyone who asks about the"
            " server's load: give it a listener of its own on a private address); client"
            " serves the media endpoints too."
            + "".join(f" {r} is accepted but serves nothing yet ({why}; a warning at start"
                      " says so)." for r, why in UNSERVED_RESOURCES.items())
        ),
    )
    x_forwarded: bool = field(
        default=False,
        metadata=_doc("Trust X-Forwarded-For for the client address (behind a reverse proxy)."),
    )


@dataclass(frozen=True)
class DatabaseConfig:
    engine: str = field(
        default="sqlite",
        metadata=_doc("Storage engine.", choices=("sqlite", "postgres")),
    )
    path: str = field(
        default="homeserver.db",
        metadata=_doc("SQLite database file; relative paths are under data_dir."),
    )
    dsn: str | None = field(
        default=None,
        metadata=_doc("PostgreSQL DSN, e.g. postgresql://accord@localhost/accord."),
    )
    synchronous: str = field(
        default="full",
        metadata=_doc(
            "SQLite durability: 'full' survives power loss, 'normal' only process crashes.",
            choices=("full", "normal"),
        ),
    )
    read_connections: int = field(
        default=4, metadata=_doc("Reader connections (SQLite) / pool size (PostgreSQL).")
    )
    max_batch: int = field(
        default=256, metadata=_doc("Most queued write transactions committed together.")
    )
    reader_cache_kib: int = field(
        default=512,
        metadata=_doc(
            "Page cache of each SQLite reader connection (KiB); pages beyond it are read"
            " from the system's file cache."
        ),
    )
    event_cache_mb: int = field(
        default=40,
        metadata=_doc(
            "Memory (estimated, MiB) for events kept in memory (parsed, or as their JSON:"
            " a room's older messages, and the least recently used at the bound); the"
            " default holds some 16,000 events parsed, or 8,000 parsed and 16,000 as JSON."
        ),
    )


@dataclass(frozen=True)
class RegistrationConfig:
    policy: str = field(
        default="closed",
        metadata=_doc(
            "Who may register: open (anyone), token (with a registration token), closed.",
            choices=("open", "token", "closed"),
        ),
    )
    allow_guests: bool = field(default=False, metadata=_doc("Allow guest accounts."))
    shared_secret: str | None = field(
        default=None,
        metadata=_doc("Secret for /_synapse/admin/v1/register (tools like register_new_matrix_user)."),
    )
    password_min_length: int = field(default=8, metadata=_doc("Shortest password accepted."))
    email: str = field(
        default="off",
        metadata=_doc(
            "An e-mail address at registration (validated by a mailed link, the"
            " m.login.email.identity stage; needs email.enabled): off, optional or required.",
            choices=("off", "optional", "required"),
        ),
    )


@dataclass(frozen=True)
class AuthConfig:
    access_token_lifetime_ms: int | None = field(
        default=None,
        metadata=_doc(
            "Lifetime of access tokens issued with a refresh token (null: 5 minutes)."
        ),
    )
    refresh_token_lifetime_ms: int | None = field(
        default=None,
        metadata=_doc("Lifetime of refresh tokens (null: they never expire)."),
    )
    scrypt_n: int = field(
        default=16384, metadata=_doc("scrypt cost parameter N for password hashes.")
    )


@dataclass(frozen=True)
class RateLimit:
    per_second: float = field(default=1.0, metadata=_doc("Sustained requests per second."))
    burst: int = field(default=10, metadata=_doc("Requests allowed at once."))


def _default_rate_limits() -> dict[str, RateLimit]:
    return {
        "login": RateLimit(per_second=0.5, burst=10),
        "login_failures": RateLimit(per_second=0.1, burst=5),
        "registration": RateLimit(per_second=1.0, burst=10),
        "message": RateLimit(per_second=10.0, burst=50),
        "profile": RateLimit(per_second=2.0, burst=20),
        # Everything else a user can make the server work for, per user.
        "create_room": RateLimit(per_second=0.2, burst=10),
        "invite": RateLimit(per_second=0.5, burst=20),
        "join": RateLimit(per_second=0.5, burst=20),
        "typing": RateLimit(per_second=2.0, burst=20),
        "receipt": RateLimit(per_second=2.0, burst=50),
        "presence": RateLimit(per_second=1.0, burst=20),
        "to_device": RateLimit(per_second=10.0, burst=100),
        # Validation mails (requestToken), per client address and per e-mail address.
        "email_request": RateLimit(per_second=0.02, burst=5),
        # Inbound federation, per origin server.
        "federation_transaction": RateLimit(per_second=20.0, burst=200),
        "federation_query": RateLimit(per_second=20.0, burst=200),
        "federation_join": RateLimit(per_second=2.0, burst=50),
        "key_query": RateLimit(per_second=10.0, burst=100),
        "remote_key_fetch": RateLimit(per_second=1.0, burst=20),
        # Media uploads (POST/PUT upload and create), per user.
        "media_upload": RateLimit(per_second=1.0, burst=30),
        # URL previews, per user: each may make the server fetch a page and an image.
        "url_preview": RateLimit(per_second=1.0, burst=20),
        # Federation media downloads and thumbnails of our files, per origin server.
        "federation_media": RateLimit(per_second=20.0, burst=200),
    }


@dataclass(frozen=True)
class RateLimitConfig:
    enabled: bool = field(default=True, metadata=_doc("Turn rate limiting on or off."))
    actions: dict[str, RateLimit] = field(
        default_factory=_default_rate_limits,
        metadata=_doc(
            "Token buckets per action (login, login_failures, registration, message, profile,"
            " create_room, invite, join, typing, receipt, presence, to_device, media_upload, url_preview); each"
            " applies per user, or per"
            " client IP before login. federation_transaction (/send), federation_query (/query/*),"
            " federation_join (make_/send_ join, leave and knock, invite) and federation_media"
            " (media downloads and thumbnails) apply per origin server. A refused request is 429 M_LIMIT_EXCEEDED with Retry-After."
            " key_query: servers asked about on the notary endpoint (/_matrix/key/v2/query), per"
            " client IP; remote_key_fetch: fetches of unknown servers' keys caused by signed"
            " requests, per requesting IP."
        ),
    )
    exempt_users: list[str] = field(
        default_factory=list,
        metadata=_doc("User IDs never rate limited (bots); admins can also exempt users by API."),
    )


@dataclass(frozen=True)
class LimitsConfig:
    max_request_body_bytes: int = field(
        default=1048576, metadata=_doc("Largest JSON request body accepted (bytes).")
    )


@dataclass(frozen=True)
class SupportContact:
    role: str = field(
        default="m.role.admin",
        metadata=_doc("m.role.admin (any query), m.role.security (sensitive reports) or a namespaced role."),
    )
    matrix_id: str | None = field(default=None, metadata=_doc("A user ID to reach the administrator."))
    email_address: str | None = field(default=None, metadata=_doc("An e-mail address to reach them."))


@dataclass(frozen=True)
class WellKnownConfig:
    client_base_url: str | None = field(
        default=None,
        metadata=_doc("Base URL advertised in /.well-known/matrix/client (null: not served)."),
    )
    server_delegation: str | None = field(
        default=None,
        metadata=_doc("host:port advertised in /.well-known/matrix/server (null: not served)."),
    )
    support_contacts: list[SupportContact] = field(
        default_factory=list,
        metadata=_doc(
            "Administrator contacts in /.well-known/matrix/support (each a role and a matrix_id"
            " and/or email_address); with no contacts and no support_page it is 404."
        ),
    )
    support_page: str | None = field(
        default=None, metadata=_doc("An https URL of a help page for this server's users, in the same document.")
    )


@dataclass(frozen=True)
class OldSigningKey:
    key: str = field(default="", metadata=_doc("Base64 ed25519 public key of the retired key."))
    expired_ts: int = field(
        default=0,
        metadata=_doc("When this server stopped signing with it (ms since the epoch)."),
    )


@dataclass(frozen=True)
class TrustedKeyServer:
    server_name: str = field(default="", metadata=_doc("Notary server name."))
    verify_keys: dict[str, str] = field(
        default_factory=dict,
        metadata=_doc("Key ID -> base64 ed25519 public key the notary signs with."),
    )


@dataclass(frozen=True)
class FederationConfig:
    enabled: bool = field(
        default=True, metadata=_doc("Talk to other servers at all (false: a closed island).")
    )
    verify_certificates: bool = field(
        default=True,
        metadata=_doc("Verify other servers' TLS certificates (never turn off in production)."),
    )
    ca_bundle_path: str | None = field(
        default=None,
        metadata=_doc("Extra PEM CA bundle trusted for federation (private PKI, tests)."),
    )
    static_hosts: dict[str, str] = field(
        default_factory=dict,
        metadata=_doc(
            "Server name -> host:port to connect to, skipping discovery (development, tests)."
        ),
    )
    trusted_key_servers: list[TrustedKeyServer] = field(
        default_factory=list,
        metadata=_doc("Notaries asked for other servers' keys when those cannot be reached."),
    )
    key_validity_ms: int = field(
        default=86_400_000,
        metadata=_doc("How long the keys this server publishes stay valid (valid_until_ts)."),
    )
    retry_base_s: float = field(
        default=1.0,
        metadata=_doc("First wait before resending to a server that failed; doubles per failure."),
    )
    retry_cap_s: float = field(
        default=3600.0,
        metadata=_doc("Longest wait between resends to a server that keeps failing."),
    )
    policy: str = field(
        default="open",
        metadata=_doc(
            "Which servers we federate with: open (any Matrix server, as standard) or partners"
            " (only servers with an active partnership, plus allowed_servers).",
            choices=("open", "partners"),
        ),
    )
    allowed_servers: list[str] = field(
        default_factory=list,
        metadata=_doc("Server names always federated with under policy 'partners', partnership or not."),
    )


@dataclass(frozen=True)
class OutboundConfig:
    allowed_ranges: list[str] = field(
        default_factory=list,
        metadata=_doc(
            "CIDR ranges this server may connect to although they are not publicly routable,"
            " e.g. 10.20.0.0/16 for a partner on a private network (127.0.0.0/8 and ::1/128 for"
            " local testing). Every other private, loopback, link-local, unique-local, CGNAT,"
            " multicast or reserved address is refused, for federation, key and well-known"
            " fetches alike, so no remote party can point this server into its own network."
        ),
    )
    denied_ranges: list[str] = field(
        default_factory=list,
        metadata=_doc(
            "CIDR ranges refused although public (e.g. this organization's own public"
            " addresses); an address also in allowed_ranges is allowed."
        ),
    )


@dataclass(frozen=True)
class UrlPreviewConfig:
    enabled: bool = field(
        default=False,
        metadata=_doc(
            "Serve /_matrix/client/v1/media/preview_url: the server fetches URLs users name"
            " (through the outbound guard: outbound.allowed_ranges decides which private"
            " addresses, none by default). Off: the endpoint is 404 M_UNRECOGNIZED."
        ),
    )
    max_page_bytes: int = field(
        default=1024 * 1024, metadata=_doc("Bytes of a page read for its OpenGraph tags.")
    )
    max_image_bytes: int = field(
        default=10 * 1024 * 1024,
        metadata=_doc("Largest og:image (or previewed image) fetched and stored as media."),
    )
    timeout_s: float = field(default=10.0, metadata=_doc("Longest one preview may take."))
    max_redirects: int = field(default=5, metadata=_doc("Redirects followed per fetch."))
    cache_ttl_s: int = field(
        default=3600, metadata=_doc("How long a preview is reused for the same URL.")
    )
    cache_entries: int = field(default=1000, metadata=_doc("Previews kept in memory."))


@dataclass(frozen=True)
class ProfilesConfig:
    require_auth: bool = field(
        default=False,
        metadata=_doc("Serve GET /profile only to signed-in users (the spec lets it be public)."),
    )
    limit_to_shared_rooms: bool = field(
        default=False,
        metadata=_doc(
            "Serve a profile only to its owner and to users who share a room with them"
            " (implies require_auth)."
        ),
    )


@dataclass(frozen=True)
class UserDirectoryConfig:
    search_all_local_users: bool = field(
        default=False,
        metadata=_doc(
            "POST /user_directory/search finds every user of this server (an organization's"
            " staff directory); false: only users who share a room with the searcher or are in"
            " a public or world-readable room, as the spec's minimum."
        ),
    )


@dataclass(frozen=True)
class RoomsConfig:
    internal_by_default: bool = field(
        default=False,
        metadata=_doc(
            "New rooms are internal (m.federate false: they never leave this server) unless"
            " the client's creation_content says otherwise."
        ),
    )


@dataclass(frozen=True)
class PresenceConfig:
    enabled: bool = field(
        default=True,
        metadata=_doc("Track and share online/idle/offline status (costs CPU on busy servers)."),
    )


@dataclass(frozen=True)
class PushConfig:
    enabled: bool = field(
        default=True,
        metadata=_doc(
            "Deliver notifications to the push gateways of users' http pushers (POST"
            " /_matrix/push/v1/notify). Off: pushers can still be set, notifications wait in"
            " their queues, and nothing is sent."
        ),
    )
    include_content: bool = field(
        default=True,
        metadata=_doc(
            "Send the event's content (message text) to push gateways; false sends only who"
            " wrote in which room (a pusher's data.format event_id_only sends even less)."
        ),
    )
    timeout_s: float = field(default=15.0, metadata=_doc("Longest one request to a push gateway may take."))
    retry_base_s: float = field(
        default=1.0, metadata=_doc("First wait after a failed push; it doubles with each failure.")
    )
    retry_cap_s: float = field(default=600.0, metadata=_doc("Longest wait between two tries."))
    give_up_after_s: int = field(
        default=86400,
        metadata=_doc("A notification a gateway has not accepted this long after it was queued is dropped."),
    )
    max_concurrent: int = field(
        default=64,
        metadata=_doc(
            "Gateway requests in flight at once, over all pushers (each pusher sends one at a"
            " time, in order, so a slow gateway only delays its own pushers)."
        ),
    )
    max_pushers_per_user: int = field(
        default=32, metadata=_doc("Pushers one user may have; another POST /pushers/set is refused.")
    )


@dataclass(frozen=True)
class EmailConfig:
    enabled: bool = field(
        default=False,
        metadata=_doc(
            "Send e-mail: e-mail addresses on accounts (/account/3pid, validated by a link"
            " in a mail) and e-mail pushers (unread messages mailed after notif_delay_s)."
        ),
    )
    smtp_host: str = field(default="localhost", metadata=_doc("SMTP server to send through."))
    smtp_port: int = field(default=25, metadata=_doc("Its port (587 for STARTTLS, 465 for TLS)."))
    smtp_user: str | None = field(default=None, metadata=_doc("SMTP login (null: none)."))
    smtp_password: str | None = field(default=None, metadata=_doc("SMTP password."))
    tls: str = field(
        default="starttls",
        metadata=_doc(
            "How the SMTP connection is protected: starttls (upgrade, required), tls (TLS from"
            " the start) or none (loopback relays only). The server's certificate is always"
            " checked: against the system's trust store and smtp_ca_file.",
            choices=("starttls", "tls", "none"),
        ),
    )
    smtp_ca_file: str | None = field(
        default=None,
        metadata=_doc(
            "A PEM file of CA certificates also trusted for the SMTP server's certificate (a"
            " relay with a private CA); the system's trust store stays trusted (null: only it)."
        ),
    )
    from_address: str = field(
        default="Accord <noreply@example.org>", metadata=_doc("The From of every mail.")
    )
    public_baseurl: str | None = field(
        default=None,
        metadata=_doc(
            "The public https URL of the client listener, for the links in mails (validation,"
            " the room, unsubscribing); required when enabled."
        ),
    )
    app_name: str = field(default="Accord", metadata=_doc("The service's name in mails."))
    client_room_url: str = field(
        default="https://matrix.to/#/{room_id}",
        metadata=_doc("Link to a room in notification mails; {room_id} is replaced."),
    )
    notif_delay_s: int = field(
        default=600,
        metadata=_doc("A notification still unread this long after it arrived is mailed to e-mail pushers."),
    )
    notif_check_s: float = field(
        default=30.0,
        metadata=_doc("How often e-mail pushers are looked at for notifications that are due."),
    )
    validation_lifetime_s: int = field(
        default=3600, metadata=_doc("How long a validation link sent to an address works.")
    )
    digest_hour: int = field(
        default=8,
        metadata=_doc(
            "Hour of the day (UTC, 0-23) digests are sent at, to users who chose daily or weekly"
            " ones (global account data org.accord.digest: {\"frequency\": \"daily\"|\"weekly\"|\"off\"})."
        ),
    )
    digest_weekday: int = field(
        default=0, metadata=_doc("Day weekly digests are sent on (0 Monday ... 6 Sunday).")
    )
    template_dir: str | None = field(
        default=None,
        metadata=_doc(
            "A directory of templates replacing the built-in ones by name (notif, digest,"
            " validate, reset; each a .subject, .txt and .html; _message.txt words one event"
            " of a notification mail; Jinja2, HTML autoescaped),"
            " translations in a subdirectory per language (de/notif.txt): how mails are"
            " localised or branded."
        ),
    )
    language: str = field(
        default="en",
        metadata=_doc(
            "Language of mails for users who chose none (a template directory: the package"
            " ships en and de). A user chooses with \"language\" in global account data"
            " org.accord.digest (e.g. {\"language\": \"de\"}); an e-mail pusher's lang is used"
            " next. Mails without a translation fall back to English."
        ),
    )
    timeout_s: float = field(default=30.0, metadata=_doc("Longest one SMTP delivery may take."))


@dataclass(frozen=True)
class OrganizationConfig:
    name: str | None = field(
        default=None,
        metadata=_doc("The organization's name in partner directories (null: publish nothing)."),
    )
    description: str | None = field(default=None, metadata=_doc("What the organization does."))
    specialties: list[str] = field(
        default_factory=list, metadata=_doc("Fields of work partners can search for.")
    )
    location: str | None = field(default=None, metadata=_doc("City, region or country."))
    website: str | None = field(default=None, metadata=_doc("http(s) URL of the organization."))
    contacts: list[str] = field(
        default_factory=list, metadata=_doc("Matrix user IDs partners may contact.")
    )
    rooms: list[str] = field(
        default_factory=list, metadata=_doc("Public room IDs or aliases to list with the profile.")
    )
    publish_partners: bool = field(
        default=False,
        metadata=_doc("List our active partners in the profile (enables mutual-partner recommendations)."),
    )


@dataclass(frozen=True)
class PartnerDirectoryConfig:
    serve: bool = field(
        default=False,
        metadata=_doc("Act as a partner directory: accept signed profiles from other servers."),
    )
    entry_ttl_s: int = field(
        default=86_400,
        metadata=_doc("Seconds a published profile stays listed unless its server republishes."),
    )
    max_entries: int = field(
        default=10_000, metadata=_doc("Most organizations this directory lists at once.")
    )
    publish_to: list[str] = field(
        default_factory=list,
        metadata=_doc("Directories (server names) our organization profile is published to."),
    )
    search: list[str] = field(
        default_factory=list,
        metadata=_doc("Directories (server names) our users search and get recommendations from."),
    )
    search_timeout_s: float = field(
        default=5.0, metadata=_doc("How long a search waits for each directory.")
    )


@dataclass(frozen=True)
class ThumbnailSizeConfig:
    width: int = field(default=32, metadata=_doc("Width in pixels."))
    height: int = field(default=32, metadata=_doc("Height in pixels."))
    method: str = field(default="crop", metadata=_doc("How to fit.", choices=("crop", "scale")))


def _default_thumbnail_sizes() -> list[ThumbnailSizeConfig]:
    return [
        ThumbnailSizeConfig(32, 32, "crop"),
        ThumbnailSizeConfig(96, 96, "crop"),
        ThumbnailSizeConfig(320, 240, "scale"),
        ThumbnailSizeConfig(640, 480, "scale"),
        ThumbnailSizeConfig(800, 600, "scale"),
    ]


@dataclass(frozen=True)
class MediaConfig:
    max_upload_size: int = field(
        default=100 * 1024 * 1024,
        metadata=_doc("Largest file a user may upload, in bytes (advertised as m.upload.size)."),
    )
    user_quota_bytes: int | None = field(
        default=10 * 1024 * 1024 * 1024,
        metadata=_doc("Total bytes of media each user may keep uploaded (null: no quota)."),
    )
    max_pending_uploads: int = field(
        default=10,
        metadata=_doc("Async uploads (POST /_matrix/media/v1/create) a user may have waiting for content."),
    )
    unused_id_lifetime_ms: int = field(
        default=24 * 3600 * 1000,
        metadata=_doc("How long an ID from /create waits for its content before it lapses."),
    )
    max_download_wait_ms: int = field(
        default=60000,
        metadata=_doc("Longest a download waits for a pending async upload (caps timeout_ms)."),
    )
    thumbnail_sizes: list[ThumbnailSizeConfig] = field(
        default_factory=_default_thumbnail_sizes,
        metadata=_doc("Thumbnails made at upload; a request is served the smallest of these at"
                      " least as large as asked, or a size made on demand and kept."),
    )
    max_thumbnail_pixels: int = field(
        default=32_000_000,
        metadata=_doc("Images with more pixels than this get no thumbnail (decompression bombs)."),
    )
    legacy_unauthenticated: bool = field(
        default=False,
        metadata=_doc(
            "Serve media on the deprecated unauthenticated /_matrix/media/v3/download and"
            " /thumbnail endpoints. False: they are frozen for all media (404 M_NOT_FOUND), as"
            " the spec has recommended since v1.12; clients use /_matrix/client/v1/media."
        ),
    )
    legacy_freeze_ts: int | None = field(
        default=None,
        metadata=_doc(
            "With legacy_unauthenticated: the freeze, in ms since the epoch. Media uploaded (or"
            " remote media cached) after it is served only by the authenticated endpoints."
        ),
    )
    local_retention_ms: int | None = field(
        default=None,
        metadata=_doc("Delete local media neither uploaded nor downloaded for this long (null: keep)."),
    )
    remote_cache_retention_ms: int | None = field(
        default=30 * 24 * 3600 * 1000,
        metadata=_doc("Drop cached remote media not downloaded for this long (null: keep)."),
    )
    cleanup_interval_s: int = field(
        default=3600,
        metadata=_doc("How often expired uploads, old media and the remote cache are cleaned."),
    )
    url_preview: UrlPreviewConfig = field(
        default_factory=UrlPreviewConfig,
        metadata=_doc("URL previews (off by default: the server fetches URLs users name)."),
    )


@dataclass(frozen=True)
class VoipConfig:
    turn_uris: list[str] = field(
        default_factory=list,
        metadata=_doc(
            "TURN server URIs handed to clients by GET /voip/turnServer (turn: or turns:, e.g."
            " 'turn:turn.example.org:3478?transport=udp'). Empty: no TURN server, and the"
            " endpoint is 404 M_UNRECOGNIZED (the spec lets a server provide none)."
        ),
    )
    turn_shared_secret: str | None = field(
        default=None,
        metadata=_doc(
            "Secret shared with the TURN server (coturn's static-auth-secret with"
            " use-auth-secret): each user gets a username '<expiry>:<user id>' and an"
            " HMAC-SHA1 password valid for turn_user_lifetime_s. Exclusive with turn_username."
        ),
    )
    turn_username: str | None = field(
        default=None,
        metadata=_doc("A static TURN username given to every user (with turn_password); prefer the shared secret."),
    )
    turn_password: str | None = field(default=None, metadata=_doc("The static TURN password."))
    turn_user_lifetime_s: int = field(
        default=86400, metadata=_doc("How long credentials stay valid (the answer's ttl).")
    )
    turn_allow_guests: bool = field(default=True, metadata=_doc("Give TURN credentials to guest accounts too."))


@dataclass(frozen=True)
class CachesConfig:
    state_entries: int = field(
        default=100_000,
        metadata=_doc(
            "Room state entries (state key -> event) kept in memory, about 70 bytes each;"
            " snapshots of a room that differ by a few keys share one full state."
        ),
    )
    state_keys: int = field(
        default=50_000,
        metadata=_doc(
            "State keys ((type, state_key) and its ID) kept in memory, about 250 bytes each;"
            " a room member is one."
        ),
    )


@dataclass(frozen=True)
class LoggingConfig:
    level: str = field(
        default="INFO",
        metadata=_doc("Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    )


@dataclass(frozen=True)
class Config:
    server_name: str = field(
        default="", metadata=_doc("The domain part of user IDs; never change it after users exist.")
    )
    data_dir: str = field(
        default=".", metadata=_doc("Directory for the database, keys and media.")
    )
    signing_key_path: str = field(
        default="signing.key",
        metadata=_doc("Ed25519 server signing key; relative paths are under data_dir."),
    )
    old_signing_keys: dict[str, OldSigningKey] = field(
        default_factory=dict,
        metadata=_doc(
            "Keys this server signed with before (key ID -> public key and expired_ts), published"
            " as old_verify_keys so what they signed stays verifiable; `accord rotate-signing-key`"
            " prints the entry to add."
        ),
    )
    listeners: list[ListenerConfig] = field(
        default_factory=lambda: [ListenerConfig()],
        metadata=_doc("HTTP listeners; one may serve every API or each API its own port."),
    )
    database: DatabaseConfig = field(default_factory=DatabaseConfig, metadata=_doc("Storage."))
    registration: RegistrationConfig = field(
        default_factory=RegistrationConfig, metadata=_doc("Account registration.")
    )
    auth: AuthConfig = field(default_factory=AuthConfig, metadata=_doc("Tokens and passwords."))
    rate_limits: RateLimitConfig = field(
        default_factory=RateLimitConfig, metadata=_doc("Rate limiting.")
    )
    limits: LimitsConfig = field(default_factory=LimitsConfig, metadata=_doc("Request limits."))
    well_known: WellKnownConfig = field(
        default_factory=WellKnownConfig, metadata=_doc("Server discovery documents.")
    )
    federation: FederationConfig = field(
        default_factory=FederationConfig, metadata=_doc("Server-server federation.")
    )
    outbound: OutboundConfig = field(
        default_factory=OutboundConfig,
        metadata=_doc("Where this server may connect to (every outbound HTTP request)."),
    )
    presence: PresenceConfig = field(default_factory=PresenceConfig, metadata=_doc("Presence."))
    email: EmailConfig = field(default_factory=EmailConfig, metadata=_doc("E-mail."))
    push: PushConfig = field(
        default_factory=PushConfig,
        metadata=_doc(
            "Push notifications: delivery to push gateways (outbound.allowed_ranges decides which"
            " private addresses a gateway may have; none by default)."
        ),
    )
    rooms: RoomsConfig = field(default_factory=RoomsConfig, metadata=_doc("Rooms."))
    profiles: ProfilesConfig = field(
        default_factory=ProfilesConfig, metadata=_doc("Who may look up users' profiles.")
    )
    user_directory: UserDirectoryConfig = field(
        default_factory=UserDirectoryConfig, metadata=_doc("Who the user directory search finds.")
    )
    organization: OrganizationConfig = field(
        default_factory=OrganizationConfig,
        metadata=_doc("The organization running this server, as partner directories show it."),
    )
    partner_directory: PartnerDirectoryConfig = field(
        default_factory=PartnerDirectoryConfig,
        metadata=_doc("The shared partner directory: serving one, publishing to and searching others."),
    )
    media: MediaConfig = field(
        default_factory=MediaConfig,
        metadata=_doc("The media repository: uploads, downloads, thumbnails, retention."),
    )
    voip: VoipConfig = field(
        default_factory=VoipConfig, metadata=_doc("Voice and video calls: the TURN server clients relay through.")
    )
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata=_doc("Logging."))
    caches: CachesConfig = field(default_factory=CachesConfig, metadata=_doc("In-memory caches."))

    def resolve_path(self, path: str) -> str:
        """Paths in the config are relative to data_dir, so a data dir can be moved whole."""
        return path if os.path.isabs(path) else os.path.join(self.data_dir, path)


# --- loading -------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) + " or null"
    if origin is list:
        return "list"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return {str: "string", int: "integer", bool: "boolean", float: "number"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str, choices: tuple[str, ...] | None = None) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return _convert(value, inner, key, choices)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping")
        return _load_dataclass(tp, value, key + ".")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list")
        return [_convert(v, item_tp, f"{key}[{i}]", choices) for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping")
        return {str(k): _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    ok: bool
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ConfigError(
            f"config key '{key}' must be a {_type_name(tp)}, not {type(value).__name__}"
        )
    if choices is not None and value not in choices:
        raise ConfigError(f"config key '{key}' must be one of {', '.join(choices)}; got {value!r}")
    return value


def _load_dataclass(cls: Any, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            raise ConfigError(f"unknown config key '{prefix}{k}'")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], prefix + name, f.metadata.get("choices"))
    return cls(**kwargs)


def parse_config(data: Any, base_dir: str | None = None) -> Config:
    """Validate a parsed YAML document and check the rules that span several keys.

    A relative data_dir is taken relative to `base_dir` (the config file's folder).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the config file must be a YAML mapping")
    config: Config = _load_dataclass(Config, data)
    if base_dir is not None and not os.path.isabs(config.data_dir):
        config = dataclasses.replace(
            config, data_dir=os.path.normpath(os.path.join(base_dir, config.data_dir))
        )
    _check(config)
    return config


def _check(config: Config) -> None:
    from homeserver.identifiers import is_valid_server_name

    if not config.server_name:
        raise ConfigError("config key 'server_name' is required")
    if not is_valid_server_name(config.server_name):
        raise ConfigError(f"config key 'server_name' is not a valid server name: {config.server_name!r}")
    if not config.listeners:
        raise ConfigError("config key 'listeners' must name at least one listener")
    for i, lst in enumerate(config.listeners):
        key = f"listeners[{i}]"
        if not 0 <= lst.port <= 65535:
            raise ConfigError(f"config key '{key}.port' must be between 0 and 65535")
        for r in lst.resources:
            if r not in RESOURCES:
                raise ConfigError(
                    f"config key '{key}.resources' has unknown resource {r!r} "
                    f"(known: {', '.join(RESOURCES)})"
                )
        if lst.tls:
            for k in ("tls_certificate_path", "tls_private_key_path"):
                path = getattr(lst, k)
                if not path:
                    raise ConfigError(f"config key '{key}.{k}' is required when tls is true")
                _check_readable(config.resolve_path(path), f"{key}.{k}")
    if config.database.engine == "postgres" and not config.database.dsn:
        raise ConfigError("config key 'database.dsn' is required when database.engine is postgres")
    if config.database.read_connections < 1:
        raise ConfigError("config key 'database.read_connections' must be at least 1")
    if config.database.max_batch < 1:
        raise ConfigError("config key 'database.max_batch' must be at least 1")
    if config.database.reader_cache_kib < 64:
        raise ConfigError("config key 'database.reader_cache_kib' must be at least 64")
    if config.caches.state_entries < 1000:
        raise ConfigError("config key 'caches.state_entries' must be at least 1000")
    if config.caches.state_keys < 1000:
        raise ConfigError("config key 'caches.state_keys' must be at least 1000")
    if config.database.event_cache_mb < 1:
        raise ConfigError("config key 'database.event_cache_mb' must be at least 1")
    if config.federation.ca_bundle_path:
        _check_readable(config.resolve_path(config.federation.ca_bundle_path), "federation.ca_bundle_path")
    for name, target in config.federation.static_hosts.items():
        if not is_valid_server_name(name) or not is_valid_server_name(target):
            raise ConfigError(f"config key 'federation.static_hosts.{name}' must map a server name to host:port")
    fed = config.federation
    if not 0 < fed.retry_base_s <= fed.retry_cap_s:
        raise ConfigError("config keys 'federation.retry_base_s' and 'retry_cap_s' need 0 < base <= cap")
    for name in fed.allowed_servers:
        if not is_valid_server_name(name):
            raise ConfigError(f"config key 'federation.allowed_servers' has an invalid server name: {name!r}")
    _check_outbound(config)
    _check_partner_directory(config)
    _check_url_preview(config.media.url_preview)
    _check_push(config.push)
    _check_voip(config.voip)
    _check_support(config.well_known)
    _check_email(config)
    if config.limits.max_request_body_bytes < 1024:
        raise ConfigError("config key 'limits.max_request_body_bytes' must be at least 1024")
    for name, rl in config.rate_limits.actions.items():
        if rl.per_second <= 0 or rl.burst < 1:
            raise ConfigError(
                f"config key 'rate_limits.actions.{name}' needs per_second > 0 and burst >= 1"
            )
    key_path = config.resolve_path(config.signing_key_path)
    _check_readable(key_path, "signing_key_path")
    from homeserver.signing_key import KeyFileError, load_signing_key

    try:
        current = load_signing_key(key_path)
    except KeyFileError as e:
        raise ConfigError(f"config key 'signing_key_path': {e}") from None
    _check_old_signing_keys(config, f"{current.alg}:{current.version}")


def _check_old_signing_keys(config: Config, current_key_id: str) -> None:
    """Retired keys must decode and have a real expiry: a typo here would otherwise
    surface only as peers failing to verify our old events."""
    import re

    from federation.events.signing import decode_verify_key_base64

    for key_id, old in config.old_signing_keys.items():
        key = f"old_signing_keys.{key_id}"
        if not re.fullmatch(r"ed25519:[a-zA-Z0-9_]+", key_id):
            raise ConfigError(f"config key '{key}' must be named ed25519:<version>")
        if key_id == current_key_id:
            raise ConfigError(f"config key '{key}' is the current signing key; it cannot also be retired")
        if old.expired_ts <= 0:
            raise ConfigError(f"config key '{key}.expired_ts' must be a positive timestamp in ms")
        try:
            decode_verify_key_base64(key_id, old.key)
        except Exception:
            raise ConfigError(f"config key '{key}.key' is not a base64 ed25519 public key") from None


def _check_outbound(config: Config) -> None:
    """Every range must parse as CIDR, so a typo is found at startup rather than as a
    partner that cannot be reached."""
    import ipaddress

    for key in ("allowed_ranges", "denied_ranges"):
        for cidr in getattr(config.outbound, key):
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                raise ConfigError(
                    f"config key 'outbound.{key}' has an invalid CIDR range: {cidr!r}"
                ) from None


def _check_url_preview(up: UrlPreviewConfig) -> None:
    key = "config key 'media.url_preview."
    if up.max_page_bytes < 1024 or up.max_image_bytes < 1024:
        raise ConfigError(key + "max_page_bytes' and 'max_image_bytes' must be at least 1024")
    if not 0 < up.timeout_s <= 300:
        raise ConfigError(key + "timeout_s' must be in (0, 300]")
    if not 0 <= up.max_redirects <= 20:
        raise ConfigError(key + "max_redirects' must be from 0 to 20")
    if up.cache_ttl_s < 1 or up.cache_entries < 1:
        raise ConfigError(key + "cache_ttl_s' and 'cache_entries' must be at least 1")


def _check_support(wk: WellKnownConfig) -> None:
    """What /.well-known/matrix/support publishes must be what the spec's schema allows."""
    import re

    from homeserver.identifiers import parse_user_id

    for i, contact in enumerate(wk.support_contacts):
        key = f"config key 'well_known.support_contacts[{i}]"
        if contact.matrix_id is None and contact.email_address is None:
            raise ConfigError(key + "' needs a matrix_id or an email_address")
        if contact.matrix_id is not None and parse_user_id(contact.matrix_id) is None:
            raise ConfigError(key + ".matrix_id' is not a user ID")
        if contact.email_address is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+", contact.email_address):
            raise ConfigError(key + ".email_address' is not an e-mail address")
        if contact.role not in ("m.role.admin", "m.role.security") and not re.fullmatch(
            r"[a-z0-9]+(\.[a-z0-9_-]+)+", contact.role
        ):
            raise ConfigError(key + ".role' must be m.role.admin, m.role.security or a namespaced identifier")
    if wk.support_page is not None and not wk.support_page.startswith(("https://", "http://")):
        raise ConfigError("config key 'well_known.support_page' must be an http(s) URL")


def _check_voip(voip: VoipConfig) -> None:
    """One way of handing out credentials, and URIs a client can use: a mistake here
    would otherwise show only as calls that fail to connect."""
    key = "config key 'voip."
    for i, uri in enumerate(voip.turn_uris):
        scheme, _, rest = uri.partition(":")
        if scheme not in ("turn", "turns") or not rest or any(c.isspace() for c in uri):
            raise ConfigError(key + f"turn_uris[{i}]' must be a turn: or turns: URI; got {uri!r}")
    static = voip.turn_username is not None or voip.turn_password is not None
    if voip.turn_shared_secret is not None and static:
        raise ConfigError(key + "turn_shared_secret' and 'turn_username'/'turn_password' are exclusive")
    if voip.turn_shared_secret == "":
        raise ConfigError(key + "turn_shared_secret' must not be empty")
    if static and not (voip.turn_username and voip.turn_password):
        raise ConfigError(key + "turn_username' and 'turn_password' must be given together, non-empty")
    if voip.turn_uris and voip.turn_shared_secret is None and not static:
        raise ConfigError(key + "turn_uris' needs turn_shared_secret or turn_username and turn_password")
    if not voip.turn_uris and (voip.turn_shared_secret is not None or static):
        raise ConfigError(key + "turn_uris' must name the TURN server the credentials are for")
    if not 60 <= voip.turn_user_lifetime_s <= 30 * 86400:
        raise ConfigError(key + "turn_user_lifetime_s' must be from 60 to 2592000 (30 days)")


def _check_push(push: PushConfig) -> None:
    key = "config key 'push."
    if not 0 < push.timeout_s <= 300:
        raise ConfigError(key + "timeout_s' must be in (0, 300]")
    if not 0 < push.retry_base_s <= push.retry_cap_s:
        raise ConfigError(key + "retry_base_s' and 'retry_cap_s' need 0 < base <= cap")
    if push.give_up_after_s < 1:
        raise ConfigError(key + "give_up_after_s' must be at least 1")
    if not 1 <= push.max_concurrent <= 10_000:
        raise ConfigError(key + "max_concurrent' must be from 1 to 10000")
    if push.max_pushers_per_user < 1:
        raise ConfigError(key + "max_pushers_per_user' must be at least 1")


def _check_email(config: Config) -> None:
    from email.utils import parseaddr
    from urllib.parse import urlsplit

    em = config.email
    key = "config key 'email."
    name, addr = parseaddr(em.from_address)
    if "@" not in addr or any(c in em.from_address for c in "\r\n"):
        raise ConfigError(key + "from_address' must be an e-mail address, optionally with a name")
    if not 0 < em.smtp_port <= 65535:
        raise ConfigError(key + "smtp_port' must be between 1 and 65535")
    if em.notif_delay_s < 0 or em.validation_lifetime_s < 60:
        raise ConfigError(key + "notif_delay_s' must be >= 0 and 'validation_lifetime_s' >= 60")
    if not 0 < em.timeout_s <= 300:
        raise ConfigError(key + "timeout_s' must be in (0, 300]")
    if not 0 <= em.digest_hour <= 23 or not 0 <= em.digest_weekday <= 6:
        raise ConfigError(key + "digest_hour' must be 0-23 and 'digest_weekday' 0-6")
    if not 0.1 <= em.notif_check_s <= 3600:
        raise ConfigError(key + "notif_check_s' must be from 0.1 to 3600")
    if "{room_id}" not in em.client_room_url:
        raise ConfigError(key + "client_room_url' must contain {room_id}")
    if config.registration.email != "off" and not em.enabled:
        raise ConfigError("config key 'registration.email' needs 'email.enabled'")
    if em.enabled:
        parts = urlsplit(em.public_baseurl or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(key + "public_baseurl' must be an http(s) URL when e-mail is enabled")
    if em.template_dir is not None and not os.path.isdir(config.resolve_path(em.template_dir)):
        raise ConfigError(key + "template_dir' is not a directory")
    from homeserver.email.languages import language_tag

    if language_tag(em.language) is None:
        raise ConfigError(key + "language' must be a language tag such as en, de or pt-BR")
    if em.smtp_ca_file is not None:
        _check_readable(config.resolve_path(em.smtp_ca_file), "email.smtp_ca_file")
        _check_pem_certificates(config.resolve_path(em.smtp_ca_file), "email.smtp_ca_file")


def _check_partner_directory(config: Config) -> None:
    """The organization profile must be one a directory would accept, so a typo is
    found at startup rather than as a refused publish in the log hours later."""
    from homeserver.errors import MatrixError
    from homeserver.identifiers import is_valid_server_name
    from homeserver.partners.directory_profile import validate_profile

    org = config.organization
    if org.name:
        try:
            validate_profile(dataclasses.asdict(org))
        except MatrixError as e:
            raise ConfigError(f"config section 'organization': {e.message}") from None
    pd = config.partner_directory
    for key in ("publish_to", "search"):
        for name in getattr(pd, key):
            if not is_valid_server_name(name):
                raise ConfigError(f"config key 'partner_directory.{key}' has an invalid server name: {name!r}")
    if pd.publish_to and not org.name:
        raise ConfigError("config key 'partner_directory.publish_to' needs 'organization.name' set")
    if pd.entry_ttl_s < 60:
        raise ConfigError("config key 'partner_directory.entry_ttl_s' must be at least 60")
    if pd.max_entries < 1:
        raise ConfigError("config key 'partner_directory.max_entries' must be at least 1")
    if not 0 < pd.search_timeout_s <= 120:
        raise ConfigError("config key 'partner_directory.search_timeout_s' must be in (0, 120]")


def _check_readable(path: str, key: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise ConfigError(f"config key '{key}': file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"config key '{key}': cannot read {path}: {e.strerror}") from None


def _check_pem_certificates(path: str, key: str) -> None:
    """The file must hold certificates OpenSSL can load, so a wrong file is found at
    startup rather than as every mail failing its TLS handshake later."""
    import ssl

    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (ssl.SSLError, ValueError) as e:
        raise ConfigError(f"config key '{key}': not a PEM file of CA certificates ({e})") from None


def load_config(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    return parse_config(data, base_dir=os.path.dirname(os.path.abspath(path)))


# --- rendering the documented example ------------------------------------------------


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


def _render_value(name: str, value: Any, tp: Any, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    if dataclasses.is_dataclass(value):
        out.append(f"{pad}{name}:")
        _render_fields(value, indent + 1, out)
    elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        out.append(f"{pad}{name}:")
        for item in value:
            lines: list[str] = []
            _render_fields(item, indent + 2, lines)
            # Put the first key of each item on the "- " line, its comment just above.
            idx = next(i for i, ln in enumerate(lines) if not ln.lstrip().startswith("#"))
            head = [f"{pad}  " + ln.lstrip() for ln in lines[:idx]]
            out.extend(head + [f"{pad}  - " + lines[idx].lstrip()] + lines[idx + 1 :])
    elif isinstance(value, dict) and value and dataclasses.is_dataclass(next(iter(value.values()))):
        out.append(f"{pad}{name}:")
        for k, v in value.items():
            out.append(f"{pad}  {k}:")
            _render_fields(v, indent + 2, out, comments=False)
    else:
        out.append(f"{pad}{name}: {_yaml_scalar(value)}")


def _render_fields(obj: Any, indent: int, out: list[str], comments: bool = True) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if comments:
            doc = f.metadata.get("doc", "")
            default = _default_of(f)
            if default == "":
                doc += " (required)"
            elif default is not dataclasses.MISSING and _is_scalarish(default):
                doc += f" (default: {_yaml_scalar(default)})"
            out.append("  " * indent + f"# {doc}")
        _render_value(f.name, getattr(obj, f.name), hints[f.name], indent, out)


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _is_scalarish(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, str | int | float | bool) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def example_config() -> Config:
    """The configuration shown in config.example.yaml: defaults plus the usual two listeners."""
    return Config(
        server_name="example.org",
        data_dir="/var/lib/accord",
        listeners=[
            ListenerConfig(port=8008, resources=["client", "media", "admin"]),
            ListenerConfig(
                port=8448,
                bind_addresses=["0.0.0.0"],
                tls=True,
                tls_certificate_path="tls.crt",
                tls_private_key_path="tls.key",
                resources=["federation", "keys"],
            ),
            ListenerConfig(port=9000, bind_addresses=["127.0.0.1"], resources=["metrics"]),
        ],
    )


EXAMPLE_HEADER = """\
# Accord homeserver configuration: every key, with what it does and its default.
# Generate a config of your own with:
#   accord generate-config --server-name NAME --data-dir DIR --output PATH
# Relative paths are resolved under data_dir.
"""


def render_config(config: Config, header: str = "") -> str:
    """A complete YAML config, every key present and commented with what it does."""
    out: list[str] = [header.rstrip()] if header else []
    _render_fields(config, 0, out)
    return "\n".join(out) + "\n"


def to_plain(obj: Any) -> Any:
    """The config as plain YAML-able data (for tests and tools)."""
    return dataclasses.asdict(obj)
