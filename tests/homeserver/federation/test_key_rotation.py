"""A server rotating its signing key: it publishes the retired key as an old
verify key, and servers that learn of the room only afterwards still verify the
events the retired key signed, but nothing claimed to be signed after it expired.
Real servers over TLS; the rotated one is restarted as an operator would."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from federation.server_keys import parse_server_keys
from homeserver.config import ConfigError, parse_config
from homeserver.signing_key import load_signing_key, rotate_signing_key
from tests.conftest import config_dict
from tests.homeserver.federation.servers import Servers, serve


async def test_events_signed_before_a_rotation_stay_verifiable(servers: Servers) -> None:
    a_spec, b_spec, c_spec = (servers.spec(ip) for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4"))
    ca, s, ctx = servers.ca, servers.session, servers.ctx
    key_path = a_spec.data_dir / "signing.key"
    b, c = await servers.start(b_spec), await servers.start(c_spec)
    alice, bob, carol = servers.client(a_spec), servers.client(b_spec), servers.client(c_spec)
    await bob.register("bob")
    await carol.register("carol")
    async with serve(a_spec, ca):
        await alice.register("alice")
        room = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "name": "Rotating"}))["room_id"]
        await alice.call("PUT", f"/rooms/{room}/send/m.room.message/1", {"msgtype": "m.text", "body": "old key"})
        await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
        await bob.wait_for_message(room, "old key")
    joined_at = asyncio.get_running_loop().time()

    # The operator stops A, rotates, lists the retired key and starts A again.
    rotation = rotate_signing_key(str(key_path), now_ms=b.clock.time_ms())
    assert rotation.old_key_id == a_spec.key_id and rotation.new_key_id != a_spec.key_id
    old_entry = {rotation.old_key_id: {"key": rotation.old_public_key, "expired_ts": rotation.expired_ts}}
    async with serve(a_spec, ca, old_signing_keys=old_entry) as a:
        async with s.get(f"https://{a_spec.name}/_matrix/key/v2/server", ssl=ctx) as r:
            published = await r.json()
        keys = parse_server_keys(published, expected_server_name=a_spec.name, now_ms=b.clock.time_ms())
        assert set(keys.verify_keys) == {rotation.new_key_id}
        assert set(published["signatures"][a_spec.name]) == {rotation.new_key_id}
        assert published["old_verify_keys"] == old_entry
        assert keys.old_verify_keys[rotation.old_key_id].expired_ts == rotation.expired_ts

        await alice.login("alice")
        # B knew only the old key: the new key ID makes it look again (not 30 s later).
        await asyncio.sleep(max(0.0, joined_at + 1.1 - asyncio.get_running_loop().time()))
        await alice.call("PUT", f"/rooms/{room}/send/m.room.message/2", {"msgtype": "m.text", "body": "new key"})
        await bob.wait_for_message(room, "new key")

        # C never saw the old key as current: the room's state it gets on joining
        # was signed with it, and verifies through old_verify_keys.
        await carol.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
        history = await carol.call("GET", f"/rooms/{room}/state/m.room.name")
        assert history == {"name": "Rotating"}
        state = await carol.call("GET", f"/rooms/{room}/state")
        create_id = next(e["event_id"] for e in state if e["type"] == "m.room.create")
        create = await c.event_store.get_event(create_id)
        assert create is not None and rotation.old_key_id in create.event["signatures"][a_spec.name]
        old_id = rotation.old_key_id
        # ...for what was signed up to expired_ts, and nothing later.
        assert old_id in await c.keyring.get_verify_keys(a_spec.name, [old_id], rotation.expired_ts)
        assert await c.keyring.get_verify_keys(a_spec.name, [old_id], rotation.expired_ts + 1) == {}
        # A itself checks its own old events the same way.
        assert old_id in await a.keyring.get_verify_keys(a_spec.name, [old_id], rotation.expired_ts)
        assert await a.keyring.get_verify_keys(a_spec.name, [old_id], rotation.expired_ts + 1) == {}
        assert rotation.new_key_id in await a.keyring.get_verify_keys(a_spec.name, [rotation.new_key_id])
        # Everyone still talks: a message from C reaches A with the new keys in use.
        await carol.call("PUT", f"/rooms/{room}/send/m.room.message/3", {"msgtype": "m.text", "body": "from C"})
        await alice.wait_for_message(room, "from C")


def test_old_signing_keys_are_checked_at_load(tmp_path: Path) -> None:
    data = tmp_path / "hs"
    base = config_dict(data)
    current = load_signing_key(str(data / "signing.key"))
    current_id = f"{current.alg}:{current.version}"
    good_key = "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ"
    ok = parse_config({**base, "old_signing_keys": {"ed25519:old": {"key": good_key, "expired_ts": 1}}})
    assert ok.old_signing_keys["ed25519:old"].expired_ts == 1
    cases = [
        ({"rsa:old": {"key": good_key, "expired_ts": 1}}, "ed25519:<version>"),
        ({"ed25519:old": {"key": "not base64!", "expired_ts": 1}}, "not a base64 ed25519 public key"),
        ({"ed25519:old": {"key": "AAAA", "expired_ts": 1}}, "not a base64 ed25519 public key"),
        ({"ed25519:old": {"key": good_key}}, "positive timestamp"),
        ({"ed25519:old": {"key": good_key, "expired_ts": "soon"}}, "must be a integer"),
        ({current_id: {"key": good_key, "expired_ts": 1}}, "current signing key"),
        ({"ed25519:old": {"key": good_key, "expired_ts": 1, "extra": 2}}, "unknown config key"),
    ]
    for entry, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse_config({**base, "old_signing_keys": entry})


def test_rotate_signing_key_command(tmp_path: Path) -> None:
    def accord(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "homeserver", *args], capture_output=True, text=True,
                              timeout=60)

    config_path = tmp_path / "homeserver.yaml"
    assert accord("generate-config", "--server-name", "example.org", "--data-dir", str(tmp_path / "data"),
                  "--output", str(config_path)).returncode == 0
    first = load_signing_key(str(tmp_path / "data" / "signing.key"))
    r = accord("rotate-signing-key", "--config", str(config_path))
    assert r.returncode == 0, r.stderr
    block = yaml.safe_load(r.stdout[r.stdout.index("old_signing_keys:"):])
    assert list(block["old_signing_keys"]) == [f"ed25519:{first.version}"]
    second = load_signing_key(str(tmp_path / "data" / "signing.key"))
    assert second.version != first.version
    # The retired private key is kept aside, not destroyed.
    assert load_signing_key(str(tmp_path / "data" / f"signing.key.{first.version}.old")).encode() == first.encode()
    # The printed block makes a valid config; a second rotation lists both retired keys.
    config = yaml.safe_load(config_path.read_text())
    config.update(block)
    config_path.write_text(yaml.safe_dump(config))
    assert accord("check-config", "--config", str(config_path)).returncode == 0
    r = accord("rotate-signing-key", "--config", str(config_path))
    assert r.returncode == 0, r.stderr
    block = yaml.safe_load(r.stdout[r.stdout.index("old_signing_keys:"):])
    assert set(block["old_signing_keys"]) == {f"ed25519:{first.version}", f"ed25519:{second.version}"}
    # A config that cannot load is refused before any key is touched.
    assert accord("rotate-signing-key", "--config", str(tmp_path / "missing.yaml")).returncode != 0
