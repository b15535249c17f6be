"""Who may use the web app: the access token ``python -m fer serve`` asks for once it leaves loopback.

A server on a host that is not loopback takes a token, as Jupyter does: ``--token``, else
``$FER_TOKEN``, else one generated at start and printed with the URL (:func:`resolve_token`);
``--no-token`` opts out, with a warning. On loopback there is none unless one is given. With a
token, :func:`protect` wants it on every route but ``/healthz`` (monitoring), static files
included, in one of three ways:

- ``?token=...`` in the URL: it sets a cookie, so the page's own requests (the upload, the webcam
  frames, ``/video_feed``) carry it without any code in the page; ``GET /?token=...`` is then
  redirected to ``/``, so the token does not stay in the address bar or the history;
- that cookie (HttpOnly, SameSite=Lax, one per port, gone when the browser closes);
- ``Authorization: Bearer <token>``, for scripts and ``curl``.

Missing or wrong, a request gets a 401: JSON ``{"error": ...}`` saying how to pass the token,
or, for the page, a short form asking for it. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
import urllib.parse
from collections.abc import Iterable, Mapping

from flask import Flask, Response, after_this_request, jsonify, redirect, request, url_for

#: The environment variable a token can come from (``--token`` wins over it).
TOKEN_ENV = "FER_TOKEN"
#: Endpoints open without the token: monitoring must not need a secret.
PUBLIC = frozenset({"healthz"})
HOW = ("add ?token=<token> to the URL (python -m fer serve printed it) or send the header "
       "'Authorization: Bearer <token>'")

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>fer-study: access token</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 34rem; margin: 4rem auto; padding: 0 1rem">
<h1>Access token needed</h1>
<p>{message} Open the URL that <code>python -m fer serve</code> printed (it ends in
<code>?token=…</code>), or enter the token:</p>
<form method="get" action="{action}"><input name="token" type="password" aria-label="access token" required autofocus>
<button>Open</button></form>
</body></html>
"""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (a host name may resolve to anything: no)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None, no_token: bool,
                  environ: Mapping[str, str]) -> tuple[str | None, bool]:
    """The token a server on ``host`` asks for (None: no check), and whether it was generated here
    (then it must be printed; a token the user gave is not echoed into logs)."""
    if token is not None and no_token:
        raise ValueError("--token and --no-token contradict each other; pass one of them.")
    if token is not None and not token.strip():
        raise ValueError(f"--token is empty; pass a token, or leave it out to use ${TOKEN_ENV} or a generated one.")
    if no_token:
        return None, False
    given = token or environ.get(TOKEN_ENV, "").strip()
    if given:
        return given, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(24), True


def login_urls(addresses: Iterable[tuple[str, int]], token: str, shown: bool) -> list[str]:
    """The URLs to print for the server's ``(host, port)`` pairs: a wildcard address becomes this
    machine's name and its loopback, as Jupyter prints them; the token itself only if ``shown``."""
    query = "/?token=" + (urllib.parse.quote(token, safe="") if shown else "...")
    urls: list[str] = []
    for host, port in addresses:
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        wildcard = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host)
        for name in (socket.gethostname(), wildcard) if wildcard else (host,):
            url = f"http://{name}:{port}{query}"
            if url not in urls:
                urls.append(url)
    return urls


def protect(app: Flask, token: str) -> None:
    """Refuse every request to ``app`` but ``/healthz`` that does not carry ``token``."""
    if not token:
        raise ValueError("the access token is empty")
    expected = token.encode()

    def valid(given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), expected)

    @app.before_request
    def check_token():
        if request.endpoint in PUBLIC:
            return None
        in_query = request.args.get("token")
        if valid(in_query):
            if request.method == "GET" and request.endpoint == "index":
                return _remember(redirect(_without_token(), 303), token)
            after_this_request(lambda response: _remember(response, token))
            return None
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        bearer = bearer.strip() if scheme.lower() == "bearer" else ""
        cookie = request.cookies.get(_cookie_name())
        if valid(cookie) or valid(bearer):
            return None
        wrong = in_query is not None or cookie is not None or bool(bearer)
        return _refused("the access token is wrong" if wrong else "this server needs its access token")


def _cookie_name() -> str:
    # one per port: cookies ignore ports, and two servers on one machine must not overwrite each other's
    return f"fer-token-{request.environ.get('SERVER_PORT', '')}"


def _remember(response: Response, token: str) -> Response:
    # Lax, not Strict: a link opened from a mail or a chat is a cross-site navigation, and a Strict
    # cookie would be left off the redirect that follows it; Lax still keeps it off cross-site
    # POSTs (the API) and off other sites' <img>s (the stream)
    response.set_cookie(_cookie_name(), token, httponly=True, samesite="Lax", path="/")
    return response


def _without_token() -> str:
    rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
    return request.path + ("?" + urllib.parse.urlencode(rest) if rest else "")


def _refused(why: str):
    headers = {"WWW-Authenticate": 'Bearer realm="fer-study"', "Cache-Control": "no-store"}
    if request.endpoint == "index":
        page = LOGIN_PAGE.format(message=f"{why.capitalize()}.", action=url_for("index"))
        return Response(page, 401, headers, mimetype="text/html")
    return jsonify(error=f"{why}: {HOW}."), 401, headers
