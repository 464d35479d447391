"""The directory service and its admin API in-process, on a real database, with a
clock the test moves: recommendation ranking, expiry, capacity, paging order,
the operator's endpoints, the profile validator and the config checks.

Publishes here call `PartnerDirectory.publish` with an origin directly (what the
federation route does after the X-Matrix check, which the multi-server tests
exercise), so many organizations can be listed without starting a server each.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.config import ConfigError
from homeserver.errors import MatrixError
from homeserver.partners.directory import SearchQuery
from homeserver.partners.directory_profile import validate_profile
from homeserver.server import HomeServer
from tests.conftest import ClientFactory, FakeClock, HsFactory

ADMIN = "/_accord/admin/v1/partner_directory"
SERVE = {"partner_directory": {"serve": True, "entry_ttl_s": 600}}


def org(name: str, specialties: list[str] | None = None, partners: list[str] | None = None,
        **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "specialties": specialties or [], **extra}
    if partners is not None:
        body["partners"] = partners
    return body


async def names(hs: HomeServer, **query: Any) -> list[str]:
    page = await hs.partner_directory.search(SearchQuery(**query))
    return [r["server_name"] for r in page["results"]]


async def test_recommendations_rank_and_explain(make_hs: HsFactory, clock: FakeClock) -> None:
    hs = await make_hs(clock=clock, **SERVE)
    pd = hs.partner_directory
    await pd.publish("o.example", org("Ours", ["Law", "Audit"], ["p1.example", "p2.example"]))
    await pd.publish("x.example", org("Xeno", ["law"], ["p1.example", "p2.example", "p3.example"]))
    await pd.publish("y.example", org("Yak", [], ["p1.example"]))
    await pd.publish("z.example", org("Zed", ["Law", "audit"]))  # publishes no partners
    await pd.publish("w.example", org("Wok", ["Cooking"], ["p9.example"]))  # nothing in common
    await pd.publish("p1.example", org("Partner one", ["Law"]))  # already our partner
    await pd.publish("v.example", org("Vee", ["Law"], ["o.example"]))  # lists us: already partners
    await pd.verify("y.example", by="@op:test.local", note=None, ip=None)

    recs = (await pd.recommendations("o.example"))["recommendations"]
    # Equal scores keep the directory's order (verified first): Yak before Zed.
    assert [(r["entry"]["server_name"], r["score"]) for r in recs] == [
        ("x.example", 2 * 3 + 1 * 2), ("y.example", 1 * 3 + 1), ("z.example", 2 * 2),
    ]
    by_name = {r["entry"]["server_name"]: r for r in recs}
    x = by_name["x.example"]["explanation"]
    assert x["mutual_partners"] == ["p1.example", "p2.example"] and x["shared_specialties"] == ["law"]
    assert x["points"] == {"mutual_partners": 6, "shared_specialties": 2, "verified": 0}
    assert x["reasons"][0].startswith("2 mutual partner(s) (p1.example, p2.example): +6")
    y = by_name["y.example"]["explanation"]
    assert y["verified"] is True and y["points"]["verified"] == 1
    z = by_name["z.example"]["explanation"]
    assert z["mutual_partners"] == [] and z["shared_specialties"] == ["Law", "audit"]

    # Without our partner list published, mutual partners do not count at all.
    await pd.publish("o.example", org("Ours", ["Law", "Audit"]))
    answer = await pd.recommendations("o.example")
    assert answer["based_on"]["publishes_partners"] is False
    scored = {r["entry"]["server_name"]: r["score"] for r in answer["recommendations"]}
    # p1 is no longer known to be our partner; v still lists us, so it stays out.
    assert scored == {"x.example": 2, "z.example": 4, "p1.example": 2}
    # An unlisted server gets nothing to go on, and says so.
    empty = await pd.recommendations("nobody.example")
    assert empty["recommendations"] == [] and empty["based_on"]["listed"] is False


async def test_expiry_capacity_and_refresh(make_hs: HsFactory, clock: FakeClock) -> None:
    hs = await make_hs(clock=clock, partner_directory={"serve": True, "entry_ttl_s": 600, "max_entries": 2})
    pd = hs.partner_directory
    first = await pd.publish("a.example", org("Alpha"))
    assert first["ttl_s"] == 600 and first["expires_ts"] == clock.now_ms + 600_000
    await pd.publish("b.example", org("Beta"))
    with pytest.raises(MatrixError) as err:
        await pd.publish("c.example", org("Gamma"))
    assert (err.value.status, err.value.errcode) == (403, "M_FORBIDDEN")
    await pd.publish("b.example", org("Beta renamed"))  # a refresh is not a new entry
    clock.advance(400_000)
    await pd.publish("a.example", org("Alpha"))  # refreshed; b is not
    clock.advance(300_000)
    assert await names(hs) == ["a.example"]
    await pd.publish("c.example", org("Gamma"))  # b's expired place is free again
    assert await names(hs) == ["a.example", "c.example"]
    assert await pd.store.purge_expired(clock.now_ms) == 1
    # Only new or changed profiles are audited, not every refresh.
    audited = await hs.audit.query(action="partner_directory.publish", target="a.example")
    assert len(audited) == 1


async def test_search_order_and_paging(make_hs: HsFactory, clock: FakeClock) -> None:
    hs = await make_hs(clock=clock, **SERVE)
    pd = hs.partner_directory
    listed = {
        "e.example": "Same name", "d.example": "Same name", "c.example": "alpha", "b.example": "Beta",
        "a.example": "100% real_name", "f.example": "Zulu",
    }
    for server, name in listed.items():
        await pd.publish(server, org(name, ["Consulting"], location="Paris, France",
                                     description="We do things.\nWell."))
    await pd.verify("f.example", by="@op:test.local", note="ok", ip=None)
    await pd.verify("d.example", by="@op:test.local", note=None, ip=None)
    everything = await names(hs, limit=100)
    assert everything == ["d.example", "f.example", "a.example", "c.example", "b.example", "e.example"]
    seen: list[str] = []
    since = None
    while True:
        page = await pd.search(SearchQuery(limit=2, since=since, specialty="consulting"))
        seen += [r["server_name"] for r in page["results"]]
        since = page.get("next_batch")
        if since is None:
            break
    assert seen == everything
    # LIKE metacharacters are literal.
    assert await names(hs, q="100%") == ["a.example"]
    assert await names(hs, q="real_") == ["a.example"]
    assert await names(hs, q="%") == ["a.example"]
    assert await names(hs, q="well things") == everything  # every word, any order
    assert await names(hs, location="FRANCE", verified_only=True) == ["d.example", "f.example"]
    with pytest.raises(MatrixError) as err:
        await pd.search(SearchQuery(since="WzIsIngiLCJ5Il0"))  # [2,"x","y"]: not ours
    assert err.value.errcode == "M_INVALID_PARAM"


async def test_admin_api(make_api: ClientFactory, clock: FakeClock) -> None:
    api = await make_api(clock=clock, **SERVE)
    admin = (await api.register("op"))["access_token"]
    await api.hs.users.set_admin("@op:test.local", True)
    user = (await api.register("someone"))["access_token"]
    await api.hs.partner_directory.publish("a.example", org("Alpha", ["Law"]))

    await api.request("GET", ADMIN + "/entries", expect=401)
    for method, path in (("GET", "/entries"), ("GET", "/entries/a.example"),
                         ("DELETE", "/entries/a.example"), ("POST", "/entries/a.example/verify"),
                         ("POST", "/entries/a.example/unverify"), ("GET", "/publications"),
                         ("POST", "/publish"), ("POST", "/withdraw")):
        _, err = await api.request(method, ADMIN + path, {}, token=user, expect=403)
        assert err["errcode"] == "M_FORBIDDEN"

    listing = await api.get(ADMIN + "/entries?specialty=law", token=admin)
    assert [e["server_name"] for e in listing["results"]] == ["a.example"]
    await api.request("GET", ADMIN + "/entries?limit=x", token=admin, expect=400)
    await api.request("GET", ADMIN + "/entries/b.example", token=admin, expect=404)
    await api.request("GET", ADMIN + "/entries/bad%20name", token=admin, expect=400)
    # Verify before the organization publishes; the mark waits for it.
    pre = await api.post(ADMIN + "/entries/b.example/verify", {"note": "met them"}, token=admin)
    assert pre["entry"] is None and pre["verification"]["note"] == "met them"
    await api.hs.partner_directory.publish("b.example", org("Beta"))
    assert (await api.get(ADMIN + "/entries?verified_only=true", token=admin))["results"][0]["server_name"] == "b.example"
    _, err = await api.request("POST", ADMIN + "/entries/b.example/verify", {"note": 5}, token=admin, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    _, err = await api.request("POST", ADMIN + "/entries/b.example/verify", {"note": "n" * 2000},
                               token=admin, expect=400)
    assert err["errcode"] == "M_TOO_LARGE"
    _, err = await api.request("POST", ADMIN + "/entries/b.example/verify", data="{nope", token=admin, expect=400)
    assert err["errcode"] == "M_NOT_JSON"
    out = await api.post(ADMIN + "/entries/b.example/unverify", {}, token=admin)
    assert out == {"server_name": "b.example", "verified": False, "was_verified": True}
    await api.request("DELETE", ADMIN + "/entries/b.example", token=admin)
    await api.request("DELETE", ADMIN + "/entries/b.example", token=admin, expect=404)
    # This server publishes nothing: publishing is refused, status is empty.
    _, err = await api.request("POST", ADMIN + "/publish", {}, token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    assert await api.get(ADMIN + "/publications", token=admin) == {"publish_to": [], "publications": []}
    actions = [e.action for e in await api.hs.audit.query(action="partner_directory.", actor="@op:test.local")]
    assert sorted(actions) == ["partner_directory.remove", "partner_directory.unverify", "partner_directory.verify"]


async def test_not_a_directory(make_api: ClientFactory) -> None:
    api = await make_api()
    admin = (await api.register("op"))["access_token"]
    await api.hs.users.set_admin("@op:test.local", True)
    _, err = await api.request("GET", ADMIN + "/entries", token=admin, expect=404)
    assert err["errcode"] == "M_UNRECOGNIZED"
    with pytest.raises(MatrixError):
        await api.hs.partner_directory.publish("a.example", org("Alpha"))
    # Searching with no directories configured finds nothing, without error.
    page = await api.get("/_matrix/client/unstable/org.accord.directory/search?q=x", token=admin)
    assert page == {"results": [], "directories": [], "failed": {}}


async def test_own_directory_publish_and_withdraw_on_restart(make_hs: HsFactory) -> None:
    """A server can be its own directory; taking a directory out of publish_to (or
    the organization out of the config) withdraws at the next start."""
    conf = {
        "federation": {"enabled": True},
        "organization": {"name": "Self Hosted", "specialties": ["Hosting"], "publish_partners": True,
                         "contacts": ["@admin:test.local"], "rooms": ["#lobby:test.local"]},
        "partner_directory": {"serve": True, "publish_to": ["test.local"], "search": ["test.local"]},
    }
    hs = await make_hs(**conf)
    results = await hs.partner_directory_publisher.publish_all()
    assert results[0]["ok"] is True
    entry = (await hs.partner_directory.get_entry("test.local"))["entry"]
    assert entry["profile"]["partners"] == []  # publish_partners: the partnerships service's list
    assert entry["profile"]["rooms"] == ["#lobby:test.local"]
    found = await hs.partner_directory_search.search(SearchQuery(specialty="hosting"))
    assert [r["server_name"] for r in found["results"]] == ["test.local"]
    assert found["results"][0]["listed_by"] == ["test.local"]
    await hs.stop()

    hs2 = await make_hs(federation={"enabled": True}, partner_directory={"serve": True})
    async with asyncio.timeout(10):
        await hs2.partner_directory_publisher.wait_for_withdrawals()
    assert await hs2.partner_directory.store.get("test.local", hs2.clock.time_ms()) is None
    assert (await hs2.partner_directory_publisher.status())["publications"] == []


def test_profile_validator_normalises() -> None:
    profile = validate_profile({
        "name": "  Acme\u0000 \u202e Legal  ", "description": "line one\nline\ttwo\x1b[31m",
        "specialties": ["Law", " law ", "Tax  Law"], "contacts": ["@a:x.example", "@a:x.example"],
        "rooms": ["!abc", "!abc:x.example", "#room:x.example"], "partners": ["b.example", "a.example"],
        "website": "https://acme.example/about", "unknown": {"dropped": True},
    })
    assert profile["name"] == "Acme Legal"
    assert profile["description"] == "line one\nlinetwo[31m"
    assert profile["specialties"] == ["Law", "Tax Law"]
    assert profile["contacts"] == ["@a:x.example"]
    assert profile["rooms"] == ["!abc", "!abc:x.example", "#room:x.example"]
    assert profile["partners"] == ["a.example", "b.example"]
    assert "unknown" not in profile and profile["location"] == ""
    for bad in ({"name": "x", "rooms": ["#alias"]}, {"name": "x", "website": "ftp://x"},
                {"name": "x", "website": "https://"}, {"name": "x", "specialties": [" "]}):
        with pytest.raises(MatrixError) as err:
            validate_profile(bad)
        assert err.value.errcode == "M_INVALID_PARAM", bad


@pytest.mark.parametrize(("overrides", "message"), [
    ({"organization": {"name": "x", "website": "nope"}}, "organization"),
    ({"organization": {"name": "x" * 200}}, "organization"),
    ({"partner_directory": {"publish_to": ["d.example"]}}, "organization.name"),
    ({"partner_directory": {"search": ["not a server"]}}, "partner_directory.search"),
    ({"partner_directory": {"entry_ttl_s": 5}}, "entry_ttl_s"),
    ({"partner_directory": {"search_timeout_s": 0}}, "search_timeout_s"),
    ({"organization": {"name": "x", "specialties": "law"}}, "organization.specialties"),
])
def test_config_is_checked(make_config: Any, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_config(**overrides)
    assert message in str(err.value)


async def test_postgres_search_and_recommendations(pg_dsn: str, make_hs: HsFactory, clock: FakeClock) -> None:
    # pg_dsn first: fixtures tear down in reverse, so the database outlives the server.
    """The same SQL on PostgreSQL: LIKE escapes, the keyset, the joins."""
    hs = await make_hs(clock=clock, database={"engine": "postgres", "dsn": pg_dsn}, **SERVE)
    pd = hs.partner_directory
    await pd.publish("o.example", org("Ours", ["Law"], ["p1.example"]))
    await pd.publish("x.example", org("100% Xeno", ["LAW"], ["p1.example"], location="Oslo"))
    await pd.publish("y.example", org("Yak", ["Law"]))
    await pd.verify("y.example", by="@op:test.local", note=None, ip=None)
    assert await names(hs, q="100%") == ["x.example"]
    assert await names(hs, specialty="law", verified_only=True) == ["y.example"]
    page = await pd.search(SearchQuery(limit=1))
    rest = await pd.search(SearchQuery(limit=5, since=page["next_batch"]))
    assert [r["server_name"] for r in page["results"] + rest["results"]] == ["y.example", "x.example", "o.example"]
    recs = (await pd.recommendations("o.example"))["recommendations"]
    assert [(r["entry"]["server_name"], r["score"]) for r in recs] == [("x.example", 5), ("y.example", 3)]
    clock.advance(601_000)
    assert await names(hs) == []
    assert await pd.store.purge_expired(clock.now_ms) == 3


def test_a_hostile_directory_answer_is_revalidated() -> None:
    """What a directory returns is remote input: bad entries are dropped, and only
    the understood, bounded parts of an explanation are passed to the user."""
    from homeserver.partners.directory_search import _clean_entry, _clean_explanation

    good = {"server_name": "a.example", "profile": {"name": "Alpha"}, "verified": True, "updated_ts": 5}
    assert _clean_entry(good) == {
        "server_name": "a.example", "verified": True, "updated_ts": 5,
        "profile": validate_profile({"name": "Alpha"}),
    }
    for bad in (None, [], {"server_name": "bad name", "profile": {"name": "x"}},
                {"server_name": "a.example", "profile": {"name": "x" * 10_000}},
                {"server_name": "a.example", "profile": "Alpha"},
                {"server_name": 5, "profile": {"name": "x"}}):
        assert _clean_entry(bad) is None, bad
    assert _clean_entry({**good, "verified": "yes", "updated_ts": "soon"}) == {
        **_clean_entry(good), "verified": False, "updated_ts": 0,  # type: ignore[dict-item]
    }
    assert _clean_explanation({
        "mutual_partners": ["a.example", "bad name", 3], "shared_specialties": ["Law", "x" * 500],
        "verified": "yes", "reasons": ["ok", {"html": "<script>"}], "extra": "dropped",
    }) == {"mutual_partners": ["a.example"], "shared_specialties": ["Law"], "reasons": ["ok"]}
    assert _clean_explanation("nope") == {}
