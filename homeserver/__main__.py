"""The `accord` command line: generate-config, check-config, run, register-user,
rotate-signing-key.

Operators script these flags, so they are kept stable.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import secrets
import signal
import sys

from homeserver.config import (
    Config,
    ConfigError,
    ListenerConfig,
    RegistrationConfig,
    load_config,
    render_config,
)
from homeserver.signing_key import (
    KeyFileError,
    rotate_signing_key,
    write_new_signing_key,
    write_self_signed_cert,
)

HEADER = """\
# Accord homeserver configuration.
# Every key is listed with its default; relative paths are under data_dir.
"""


def _fail(message: str) -> int:
    print(f"accord: {message}", file=sys.stderr)
    return 1


def generate_config(args: argparse.Namespace) -> int:
    if os.path.exists(args.output):
        return _fail(f"{args.output} already exists; refusing to overwrite it")
    data_dir = os.path.abspath(args.data_dir)
    os.makedirs(data_dir, exist_ok=True)
    key_path = os.path.join(data_dir, "signing.key")
    if not os.path.exists(key_path):
        write_new_signing_key(key_path)
    cert, tls_key = os.path.join(data_dir, "tls.crt"), os.path.join(data_dir, "tls.key")
    if not (os.path.exists(cert) and os.path.exists(tls_key)):
        write_self_signed_cert(cert, tls_key, args.server_name)
    # /metrics is not on the client listener: anyone reaching that port could read the
    # server's load. It is served only on a listener of its own, on loopback, when asked.
    metrics = []
    if args.metrics_port is not None:
        metrics = [ListenerConfig(port=args.metrics_port, bind_addresses=["127.0.0.1"], resources=["metrics"])]
    config = Config(
        server_name=args.server_name,
        data_dir=data_dir,
        signing_key_path="signing.key",
        listeners=[
            ListenerConfig(
                port=args.client_port,
                bind_addresses=[args.bind],
                resources=["client", "media", "admin"],
            ),
            ListenerConfig(
                port=args.federation_port,
                bind_addresses=[args.bind],
                tls=True,
                tls_certificate_path="tls.crt",
                tls_private_key_path="tls.key",
                resources=["federation", "keys"],
            ),
            *metrics,
        ],
        registration=RegistrationConfig(shared_secret=secrets.token_urlsafe(32)),
    )
    text = render_config(config, HEADER)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    print(f"wrote {args.output} (signing key and TLS certificate in {data_dir})")
    return 0


def _load(path: str) -> Config:
    config = load_config(path)
    logging.basicConfig(
        level=config.logging.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return config


def check_config(args: argparse.Namespace) -> int:
    try:
        load_config(args.config)
    except ConfigError as e:
        return _fail(str(e))
    print(f"{args.config}: ok")
    return 0


async def _run(config: Config) -> None:
    from homeserver.memory import trim_heap
    from homeserver.server import HomeServer

    hs = HomeServer(config)
    await hs.start()
    try:
        await hs.start_listeners()
        _gc_for_big_caches()
        trim_heap()
        for lst, addr, port in hs.bound:
            scheme = "https" if lst.tls else "http"
            print(f"accord: listening on {scheme}://{addr}:{port} ({', '.join(lst.resources)})", flush=True)
        print(
            "accord: register the first admin with:\n"
            f"  accord register-user --config {getattr(config, '_path', 'CONFIG')} --admin USERNAME",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await hs.stop()


# Young-generation allocations between collections (CPython's default is 700), and how
# many younger collections go before each older one (10 and 10 by default).
_GC_THRESHOLDS = (50_000, 20, 100)


def _gc_for_big_caches() -> None:
    """Collect cycles less often than CPython's defaults, which suit small programs.

    The caches (events, state snapshots, members) hold a few hundred thousand
    objects, and a request such as a big account's initial sync allocates as many
    that live until its response is sent: with a young generation of 700 objects
    they are scanned hundreds of times a request and the whole heap again and
    again, a fifth of such a request's CPU. Cyclic garbage is rare here (reference
    counting frees almost everything), so waiting for more allocations costs little
    memory. What start-up made is frozen: never freed, so never worth scanning."""
    import gc

    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def _few_malloc_arenas() -> None:
    """Cap glibc's malloc at two arenas (unless the operator set MALLOC_ARENA_MAX).

    By default each thread that allocates (every SQLite connection has its own) gets
    an arena of its own, up to eight per core, and memory freed in one is rarely given
    back: the resident size under load grows with the threads, not with the data.
    Python serves small objects from its own pools, so the threads seldom contend
    for the two. Set before any thread starts, with the mmap threshold of
    `homeserver.memory`; a libc without mallopt is left alone."""
    from homeserver.memory import tune_malloc

    tune_malloc(arena_max=None if "MALLOC_ARENA_MAX" in os.environ else 2)


def run(args: argparse.Namespace) -> int:
    from homeserver.storage.database import DatabaseError

    _few_malloc_arenas()
    try:
        config = _load(args.config)
        object.__setattr__(config, "_path", args.config)
        asyncio.run(_run(config))
    except (ConfigError, KeyFileError, DatabaseError) as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"cannot start: {e}")
    return 0


async def _register_user(config: Config, username: str, password: str, admin: bool) -> str:
    from homeserver.server import HomeServer

    hs = HomeServer(config)
    await hs.start()
    try:
        user_id = await hs.registration.check_available(username)
        hs.registration.check_password(password)
        result = await hs.registration.create_account(user_id, password, admin=admin, login=False)
        return result["user_id"]
    finally:
        await hs.stop()


def register_user(args: argparse.Namespace) -> int:
    from homeserver.errors import MatrixError
    from homeserver.storage.database import DatabaseError

    try:
        config = load_config(args.config)
    except ConfigError as e:
        return _fail(str(e))
    password = args.password
    if password is None:
        if not sys.stdin.isatty():
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Confirm password: ") != password:
                return _fail("passwords do not match")
    try:
        user_id = asyncio.run(_register_user(config, args.user, password, args.admin))
    except MatrixError as e:
        return _fail(f"{e.errcode}: {e.message}")
    except (KeyFileError, DatabaseError) as e:
        return _fail(str(e))
    print(f"registered {user_id}{' (admin)' if args.admin else ''}")
    return 0


def rotate_key(args: argparse.Namespace) -> int:
    """Replace the signing key and print the `old_signing_keys` block the config needs
    from the next start on (the config file itself is left alone: its comments and
    layout are the operator's). Run it while the server is stopped: a running server
    keeps signing with the key it loaded, after the expiry this records."""
    import time

    import yaml

    try:
        config = load_config(args.config)
        rotation = rotate_signing_key(
            config.resolve_path(config.signing_key_path),
            int(time.time() * 1000),
            avoid_versions={kid.partition(":")[2] for kid in config.old_signing_keys},
        )
    except (ConfigError, KeyFileError) as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"cannot rotate the signing key: {e}")
    entries = {kid: {"key": old.key, "expired_ts": old.expired_ts} for kid, old in config.old_signing_keys.items()}
    entries[rotation.old_key_id] = {"key": rotation.old_public_key, "expired_ts": rotation.expired_ts}
    print(f"new signing key {rotation.new_key_id}; the old one was moved to {rotation.archived_path}")
    print(f"replace old_signing_keys in {args.config} with the following, then start the server:\n")
    print(yaml.safe_dump({"old_signing_keys": entries}, sort_keys=False), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="accord", description="Accord Matrix homeserver")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate-config", help="write a complete config, signing key and TLS cert")
    g.add_argument("--server-name", required=True)
    g.add_argument("--data-dir", required=True)
    g.add_argument("--output", required=True)
    g.add_argument("--bind", default="127.0.0.1")
    g.add_argument("--client-port", type=int, default=8008)
    g.add_argument("--federation-port", type=int, default=8448)
    g.add_argument(
        "--metrics-port", type=int, default=None,
        help="serve /metrics on 127.0.0.1 at this port (default: not served)",
    )
    g.set_defaults(func=generate_config)

    r = sub.add_parser("run", help="start the homeserver")
    r.add_argument("--config", required=True)
    r.set_defaults(func=run)

    u = sub.add_parser("register-user", help="create a user account")
    u.add_argument("--config", required=True)
    u.add_argument("user", help="the localpart of the new user")
    u.add_argument("--password")
    u.add_argument("--admin", action="store_true")
    u.set_defaults(func=register_user)

    k = sub.add_parser("rotate-signing-key", help="replace the signing key, keeping the old one verifiable")
    k.add_argument("--config", required=True)
    k.set_defaults(func=rotate_key)

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("--config", required=True)
    c.set_defaults(func=check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
