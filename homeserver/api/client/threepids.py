"""E-mail addresses on accounts (the spec's /account/3pid endpoints), and the two
pages the links in mails open: validating an address and unsubscribing from
notification mails (neither needs a login: the link carries its proof). Phone numbers
are not supported: their requestToken endpoints say so with the spec's errcode."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, client_ip, get_hs, json_response, read_json, requester
from homeserver.email.languages import accepted_languages
from homeserver.email.threepids import SUBMIT_PATH, UNSUBSCRIBE_PATH
from homeserver.errors import MatrixError, unrecognized
from homeserver.params import try_parse_int

PASSWORD_FLOWS = [["m.login.password"]]


async def request_token(request: web.Request) -> web.Response:
    hs = get_hs(request)
    body = await read_json(request)
    return json_response(await hs.threepids.request_token(body, client_ip(request), languages=browser_languages(request)))


async def add_threepid(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request)
    uia = await hs.uia.check(body, uri="/account/3pid/add", method="POST", flows=PASSWORD_FLOWS, requester=req)
    await hs.threepids.add(req.user_id, body)
    await hs.uia.finish(uia)
    return json_response({})


async def delete_threepid(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await read_json(request)
    return json_response(await get_hs(request).threepids.delete(req.user_id, body))


async def get_threepids(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response({"threepids": await get_hs(request).threepids.list(req.user_id)})


def browser_languages(request: web.Request) -> list[str]:
    """What the client or browser asks for (Accept-Language), best first."""
    return accepted_languages(request.headers.get("Accept-Language"))


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


async def submit_token(request: web.Request) -> web.Response:
    hs = get_hs(request)
    if hs.mailer is None:
        raise unrecognized()
    q = request.query
    ok = await hs.threepids.submit_token(q.get("sid", ""), q.get("client_secret", ""), q.get("token", ""))
    langs = browser_languages(request)
    if ok:
        return _html(hs.mailer.page("confirmed", langs))
    return _html(hs.mailer.page("invalid", langs), 400)


async def unsubscribe(request: web.Request) -> web.Response:
    hs = get_hs(request)
    if hs.email_notifier is None or hs.mailer is None:
        raise unrecognized()
    nid = try_parse_int(request.query.get("pusher", ""), minimum=1)
    token = request.query.get("token", "")
    apply = request.method == "POST"  # a GET only asks: mail scanners follow links
    langs = browser_languages(request)
    if nid is None or not await hs.email_notifier.unsubscribe(nid, token, apply=apply):
        return _html(hs.mailer.page("invalid", langs), 400)
    if apply:
        return _html(hs.mailer.page("unsubscribed", langs))
    return _html(hs.mailer.page("unsubscribe_ask", langs, form_action=str(request.rel_url),
                                button="unsubscribe_button"))


async def msisdn_request_token(request: web.Request) -> web.Response:
    """The server sends no SMS: registration, password reset and adding an address all
    answer M_THREEPID_MEDIUM_NOT_SUPPORTED (v1.13) rather than a missing endpoint."""
    await read_json(request)
    raise MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "This server does not support phone numbers")


def register(routes: ClientRoutes) -> None:
    for path in ("/register", "/account/password", "/account/3pid"):
        routes.add("POST", path + "/msisdn/requestToken", msisdn_request_token)
    routes.add("POST", "/account/3pid/email/requestToken", request_token)
    routes.add("POST", "/account/3pid/add", add_threepid)
    routes.add("POST", "/account/3pid/delete", delete_threepid)
    routes.add("GET", "/account/3pid", get_threepids)
    routes.app.router.add_route("GET", SUBMIT_PATH, submit_token)
    routes.app.router.add_route("GET", UNSUBSCRIBE_PATH, unsubscribe)
    routes.app.router.add_route("POST", UNSUBSCRIBE_PATH, unsubscribe)
