"""Config loading: every mistake is refused with one line naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.config import (
    EXAMPLE_HEADER,
    Config,
    ConfigError,
    example_config,
    load_config,
    parse_config,
    render_config,
)
from tests.conftest import config_dict

REPO = Path(__file__).resolve().parents[2]


def test_example_file_is_current_and_complete() -> None:
    text = (REPO / "config.example.yaml").read_text()
    assert text == render_config(example_config(), EXAMPLE_HEADER), (
        "config.example.yaml is stale; regenerate it from homeserver.config.example_config()"
    )
    data = yaml.safe_load(text)
    # Every key of every section is present, so the example documents them all.
    assert set(data) == set(Config.__dataclass_fields__)
    assert set(data["database"]) == {
        "engine", "path", "dsn", "synchronous", "read_connections", "max_batch", "reader_cache_kib",
        "event_cache_mb",
    }


def test_rendered_config_round_trips(tmp_path: Path) -> None:
    config = parse_config(config_dict(tmp_path))
    path = tmp_path / "c.yaml"
    path.write_text(render_config(config))
    assert load_config(str(path)) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bogus": 1}, "unknown config key 'bogus'"),
        ({"database": {"nope": 1}}, "unknown config key 'database.nope'"),
        ({"database": {"engine": "mysql"}}, "'database.engine' must be one of sqlite, postgres"),
        ({"database": {"read_connections": "four"}}, "'database.read_connections' must be a integer"),
        ({"database": {"engine": "postgres"}}, "'database.dsn' is required"),
        ({"registration": {"allow_guests": "yes"}}, "'registration.allow_guests' must be a boolean"),
        ({"listeners": [{"port": 70000}]}, "'listeners[0].port' must be between 0 and 65535"),
        ({"listeners": [{"resources": ["gopher"]}]}, "'listeners[0].resources' has unknown resource"),
        ({"listeners": [{"tls": True}]}, "'listeners[0].tls_certificate_path' is required"),
        (
            {"listeners": [{"tls": True, "tls_certificate_path": "/nonexistent.crt", "tls_private_key_path": "k"}]},
            "'listeners[0].tls_certificate_path': file not found",
        ),
        ({"listeners": []}, "'listeners' must name at least one listener"),
        ({"listeners": {"port": 1}}, "'listeners' must be a list"),
        ({"server_name": "bad name!"}, "'server_name' is not a valid server name"),
        ({"server_name": ""}, "'server_name' is required"),
        ({"signing_key_path": "/nonexistent/key"}, "'signing_key_path': file not found"),
        ({"rate_limits": {"actions": {"login": {"per_second": 0}}}}, "'rate_limits.actions.login'"),
        ({"rate_limits": {"actions": {"login": {"burst": 1.5}}}}, "'rate_limits.actions.login.burst'"),
        ({"well_known": {"support_contacts": [{"role": "m.role.admin"}]}}, "needs a matrix_id or an email_address"),
        ({"well_known": {"support_contacts": [{"matrix_id": "admin"}]}}, "support_contacts[0].matrix_id' is not a user ID"),
        ({"well_known": {"support_contacts": [{"email_address": "nope"}]}}, "is not an e-mail address"),
        ({"well_known": {"support_contacts": [{"email_address": "a@b.c", "role": "boss"}]}}, ".role' must be"),
        ({"well_known": {"support_page": "example.org"}}, "'well_known.support_page' must be an http(s) URL"),
        ({"voip": {"turn_uris": ["stun:x.org"], "turn_shared_secret": "s"}}, "'voip.turn_uris[0]' must be a turn:"),
        ({"voip": {"turn_uris": ["turn:x.org"]}}, "'voip.turn_uris' needs turn_shared_secret"),
        ({"voip": {"turn_shared_secret": "s"}}, "'voip.turn_uris' must name the TURN server"),
        ({"voip": {"turn_uris": ["turn:x.org"], "turn_shared_secret": "s", "turn_username": "u",
                   "turn_password": "p"}}, "are exclusive"),
        ({"voip": {"turn_uris": ["turn:x.org"], "turn_username": "u"}}, "must be given together"),
        ({"voip": {"turn_uris": ["turn:x.org"], "turn_shared_secret": ""}}, "must not be empty"),
        ({"voip": {"turn_uris": ["turn:x.org"], "turn_shared_secret": "s", "turn_user_lifetime_s": 5}},
         "'voip.turn_user_lifetime_s' must be from 60"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(config_dict(tmp_path, **overrides))
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_bad_signing_key_file(tmp_path: Path) -> None:
    data = config_dict(tmp_path)
    (tmp_path / "bad.key").write_text("not a key\n")
    data["signing_key_path"] = "bad.key"
    with pytest.raises(ConfigError, match="'signing_key_path'.*not a valid key file"):
        parse_config(data)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("server_name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(str(bad))
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(str(bad))


def test_relative_data_dir_is_relative_to_config(tmp_path: Path) -> None:
    data = config_dict(tmp_path / "d")
    data["data_dir"] = "d"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(str(path))
    assert config.data_dir == str(tmp_path / "d")
    assert config.resolve_path("homeserver.db") == str(tmp_path / "d" / "homeserver.db")


def test_federation_retry_bounds(tmp_path: Path) -> None:
    config = parse_config(config_dict(tmp_path, federation={"retry_base_s": 2, "retry_cap_s": 60}))
    assert (config.federation.retry_base_s, config.federation.retry_cap_s) == (2.0, 60.0)
    with pytest.raises(ConfigError, match="federation.retry_base_s"):
        parse_config(config_dict(tmp_path, federation={"retry_base_s": 10, "retry_cap_s": 5}))
    with pytest.raises(ConfigError, match="federation.retry_base_s"):
        parse_config(config_dict(tmp_path, federation={"retry_base_s": 0}))
