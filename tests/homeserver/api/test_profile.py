"""Profiles: GET /profile/{userId} and GET/PUT/DELETE /profile/{userId}/{keyName} (v1.16)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api

ALICE = "@alice:test.local"


async def alice(api: Api) -> str:
    return (await api.register("alice"))["access_token"]


async def put(api: Api, key: str, value: Any, token: str, user: str = ALICE, expect: int = 200) -> Any:
    return (await api.request("PUT", f"profile/{user}/{key}", {key: value}, token=token, expect=expect))[1]


# --- reading ---------------------------------------------------------------------------------


async def test_new_profile_has_the_localpart_as_display_name(api: Api) -> None:
    await alice(api)
    assert await api.get(f"profile/{ALICE}") == {"displayname": "alice"}
    assert await api.get(f"profile/{ALICE}/displayname") == {"displayname": "alice"}


async def test_profile_is_public(api: Api) -> None:
    token = await alice(api)
    await put(api, "avatar_url", "mxc://test.local/abcDEF123", token)
    bob = (await api.register("bob"))["access_token"]
    assert await api.get(f"profile/{ALICE}", token=bob) == {
        "displayname": "alice", "avatar_url": "mxc://test.local/abcDEF123"
    }
    assert await api.get(f"profile/{ALICE}") == {
        "displayname": "alice", "avatar_url": "mxc://test.local/abcDEF123"
    }


async def test_unknown_user(api: Api) -> None:
    for path in ("profile/@nobody:test.local", "profile/@nobody:test.local/displayname",
                 "profile/@alice:elsewhere.example"):
        _, err = await api.request("GET", path, expect=404)
        assert err["errcode"] == "M_NOT_FOUND", path


async def test_unset_field(api: Api) -> None:
    await alice(api)
    for key in ("avatar_url", "m.tz", "org.example.job_title"):
        _, err = await api.request("GET", f"profile/{ALICE}/{key}", expect=404)
        assert err["errcode"] == "M_NOT_FOUND", key


async def test_invalid_user_id(api: Api) -> None:
    for user in ("alice", "@alice", "@:test.local"):
        _, err = await api.request("GET", f"profile/{user}", expect=400)
        assert err["errcode"] == "M_INVALID_PARAM", user


# --- setting ---------------------------------------------------------------------------------


async def test_set_displayname(api: Api) -> None:
    token = await alice(api)
    assert await put(api, "displayname", "Alice Liddell", token) == {}
    assert await api.get(f"profile/{ALICE}/displayname") == {"displayname": "Alice Liddell"}
    assert await api.get(f"profile/{ALICE}") == {"displayname": "Alice Liddell"}


async def test_set_avatar_url(api: Api) -> None:
    token = await alice(api)
    await put(api, "avatar_url", "mxc://example.org/SDGdghriugerRg", token)
    assert await api.get(f"profile/{ALICE}/avatar_url") == {
        "avatar_url": "mxc://example.org/SDGdghriugerRg"
    }


async def test_avatar_url_must_be_mxc(api: Api) -> None:
    token = await alice(api)
    for value in ("https://example.org/cat.png", "http://x/y", "cat.png"):
        err = await put(api, "avatar_url", value, token, expect=400)
        assert err["errcode"] == "M_BAD_JSON", value
    for value in (5, {"url": "mxc://a/b"}, ["mxc://a/b"], None):
        err = await put(api, "avatar_url", value, token, expect=400)
        assert err["errcode"] == "M_BAD_JSON", value
    _, err = await api.request("GET", f"profile/{ALICE}/avatar_url", expect=404)
    assert err["errcode"] == "M_NOT_FOUND"


async def test_displayname_must_be_a_string(api: Api) -> None:
    token = await alice(api)
    for value in (5, None, ["Alice"], {"name": "Alice"}):
        err = await put(api, "displayname", value, token, expect=400)
        assert err["errcode"] == "M_BAD_JSON", value
    err = await put(api, "displayname", "x" * 257, token, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    assert await api.get(f"profile/{ALICE}/displayname") == {"displayname": "alice"}


async def test_time_zone(api: Api) -> None:
    token = await alice(api)
    await put(api, "m.tz", "Europe/London", token)
    assert await api.get(f"profile/{ALICE}/m.tz") == {"m.tz": "Europe/London"}
    err = await put(api, "m.tz", 0, token, expect=400)
    assert err["errcode"] == "M_BAD_JSON"


async def test_custom_fields(api: Api) -> None:
    token = await alice(api)
    job = {"title": "Engineer", "team": ["core", "infra"], "level": 3}
    await put(api, "org.example.job", job, token)
    await put(api, "m.example_field", "custom_value", token)
    await put(api, "com.example.flag", True, token)
    await put(api, "com.example.nothing", None, token)  # null is stored, not a deletion
    assert await api.get(f"profile/{ALICE}/org.example.job") == {"org.example.job": job}
    assert await api.get(f"profile/{ALICE}/com.example.nothing") == {"com.example.nothing": None}
    assert await api.get(f"profile/{ALICE}") == {
        "displayname": "alice",
        "org.example.job": job,
        "m.example_field": "custom_value",
        "com.example.flag": True,
        "com.example.nothing": None,
    }
    # Overwrite.
    await put(api, "org.example.job", "Manager", token)
    assert await api.get(f"profile/{ALICE}/org.example.job") == {"org.example.job": "Manager"}


async def test_put_body_must_carry_the_key(api: Api) -> None:
    token = await alice(api)
    _, err = await api.request(
        "PUT", f"profile/{ALICE}/displayname", {"avatar_url": "mxc://a/b"}, token=token, expect=400
    )
    assert err["errcode"] == "M_MISSING_PARAM"
    _, err = await api.request("PUT", f"profile/{ALICE}/displayname", {}, token=token, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"


async def test_put_bad_bodies(api: Api) -> None:
    token = await alice(api)
    _, err = await api.request(
        "PUT", f"profile/{ALICE}/displayname", data=b"{oops", token=token, expect=400
    )
    assert err["errcode"] == "M_NOT_JSON"
    _, err = await api.request(
        "PUT", f"profile/{ALICE}/displayname", data=b'"Alice"', token=token, expect=400
    )
    assert err["errcode"] == "M_BAD_JSON"


async def test_invalid_keys(api: Api) -> None:
    token = await alice(api)
    for key in ("foo", "Org.example.x", "org.Example", "org..example", "org.example.", ".org.x",
                "1org.example", "org.example-x", "org.example%0A", "displayname%0A"):
        _, err = await api.request(
            "PUT", f"profile/{ALICE}/{key}", {key: "x"}, token=token, expect=400
        )
        assert err["errcode"] == "M_INVALID_PARAM", key
        _, err = await api.request("DELETE", f"profile/{ALICE}/{key}", token=token, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM", key


async def test_key_too_large(api: Api) -> None:
    token = await alice(api)
    key = "org.example." + "k" * 250  # valid grammar, 262 bytes
    err = await put(api, key, "x", token, expect=400)
    assert err["errcode"] == "M_KEY_TOO_LARGE"
    _, err = await api.request("DELETE", f"profile/{ALICE}/{key}", token=token, expect=400)
    assert err["errcode"] == "M_KEY_TOO_LARGE"
    # Exactly 255 bytes is fine.
    key = "org.example." + "k" * 243
    assert len(key) == 255
    await put(api, key, "x", token)


async def test_profile_too_large(api: Api) -> None:
    token = await alice(api)
    err = await put(api, "org.example.blob", "x" * (64 * 1024), token, expect=400)
    assert err["errcode"] == "M_PROFILE_TOO_LARGE"
    # The limit is on the whole profile, not one field.
    await put(api, "org.example.one", "x" * 40_000, token)
    err = await put(api, "org.example.two", "y" * 40_000, token, expect=400)
    assert err["errcode"] == "M_PROFILE_TOO_LARGE"
    profile = await api.get(f"profile/{ALICE}")
    assert set(profile) == {"displayname", "org.example.one"}
    # Replacing a field counts its new size, not old plus new.
    await put(api, "org.example.one", "z" * 40_000, token)


# --- deleting --------------------------------------------------------------------------------


async def test_delete_fields(api: Api) -> None:
    token = await alice(api)
    await put(api, "org.example.job", "Engineer", token)
    await put(api, "avatar_url", "mxc://test.local/abc", token)
    for key in ("org.example.job", "displayname", "avatar_url"):
        status, body = await api.request("DELETE", f"profile/{ALICE}/{key}", token=token)
        assert (status, body) == (200, {})
        _, err = await api.request("GET", f"profile/{ALICE}/{key}", expect=404)
        assert err["errcode"] == "M_NOT_FOUND"
    assert await api.get(f"profile/{ALICE}") == {}
    # Deleting what is not there succeeds too.
    status, body = await api.request("DELETE", f"profile/{ALICE}/org.example.never", token=token)
    assert (status, body) == (200, {})


# --- permissions -----------------------------------------------------------------------------


async def test_cannot_change_someone_elses_profile(api: Api) -> None:
    await alice(api)
    bob = (await api.register("bob"))["access_token"]
    for user in (ALICE, "@nobody:test.local", "@alice:elsewhere.example"):
        err = await put(api, "displayname", "Mallory", bob, user=user, expect=403)
        assert err["errcode"] == "M_FORBIDDEN", user
        _, err = await api.request("DELETE", f"profile/{user}/displayname", token=bob, expect=403)
        assert err["errcode"] == "M_FORBIDDEN", user
    assert await api.get(f"profile/{ALICE}") == {"displayname": "alice"}


async def test_changes_require_auth(api: Api) -> None:
    await alice(api)
    _, err = await api.request(
        "PUT", f"profile/{ALICE}/displayname", {"displayname": "x"}, expect=401
    )
    assert err["errcode"] == "M_MISSING_TOKEN"
    _, err = await api.request("DELETE", f"profile/{ALICE}/displayname", expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    _, err = await api.request(
        "PUT", f"profile/{ALICE}/displayname", {"displayname": "x"}, token="bogus", expect=401
    )
    assert err["errcode"] == "M_UNKNOWN_TOKEN"


async def test_guest_can_set_own_displayname(make_api) -> None:
    api = await make_api(registration={"allow_guests": True})
    guest = await api.post("register?kind=guest", {})
    user = guest["user_id"]
    await put(api, "displayname", "Visitor", guest["access_token"], user=user)
    assert await api.get(f"profile/{user}/displayname") == {"displayname": "Visitor"}
