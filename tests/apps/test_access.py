"""The web app's access token (``fer.apps.access``): which token a host gets, and a protected app
through Flask's test client: the page, the API and ``/video_feed`` with the token accepted,
missing and wrong, ``/healthz`` open to monitoring. ``python -m fer serve``'s ``--token`` and
``--no-token`` are in ``test_serve.py``; a real server with a token in ``tests/e2e/test_server.py``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fer.apps import access, serve

TOKEN = "s3cret"
COOKIE = "fer-token-80"  # the test client's port


def _png() -> bytes:
    ok, buf = cv2.imencode(".png", np.zeros((12, 16, 3), np.uint8))
    assert ok
    return buf.tobytes()


@pytest.fixture
def client():
    return serve.create_app(analyze=lambda image: [], token=TOKEN).test_client()


def _predict(client, query: str = "", headers: dict | None = None):
    return client.post(f"/api/predict{query}", data=_png(), content_type="image/png", headers=headers or {})


# --------------------------------------------------------------------------- which token


@pytest.mark.parametrize(("host", "token", "no_token", "environ", "expected"), [
    ("127.0.0.1", None, False, {}, (None, False)),  # loopback: as before, no token
    ("localhost", None, False, {"FER_TOKEN": ""}, (None, False)),  # an empty variable is no token
    ("127.0.0.1", "abc", False, {}, ("abc", False)),  # given on loopback: asked for
    ("127.0.0.1", None, False, {"FER_TOKEN": "from-env"}, ("from-env", False)),
    ("0.0.0.0", None, False, {"FER_TOKEN": "from-env"}, ("from-env", False)),
    ("0.0.0.0", "flag", False, {"FER_TOKEN": "from-env"}, ("flag", False)),  # the command line wins
    ("0.0.0.0", None, True, {"FER_TOKEN": "from-env"}, (None, False)),  # --no-token wins over the variable
    ("192.168.1.5", None, True, {}, (None, False)),
])
def test_the_token_comes_from_the_flag_then_the_environment(host, token, no_token, environ, expected):
    assert access.resolve_token(host, token, no_token, environ) == expected


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_a_host_off_loopback_gets_a_fresh_generated_token(host):
    first, generated = access.resolve_token(host, None, False, {})
    assert generated and len(first) >= 32 and first.isascii()
    assert access.resolve_token(host, None, False, {})[0] != first


@pytest.mark.parametrize(("token", "no_token", "words"), [("abc", True, "contradict"), ("  ", False, "empty")])
def test_contradicting_or_empty_tokens_are_refused(token, no_token, words):
    with pytest.raises(ValueError, match=words):
        access.resolve_token("0.0.0.0", token, no_token, {})


def test_the_printed_urls_carry_the_token_and_name_a_usable_host(monkeypatch):
    monkeypatch.setattr(access.socket, "gethostname", lambda: "box")
    assert access.login_urls([("0.0.0.0", 5000)], "a/b", shown=True) == [
        "http://box:5000/?token=a%2Fb", "http://127.0.0.1:5000/?token=a%2Fb"]
    assert access.login_urls([("::", 80), ("::1", 80)], "t", shown=True) == [
        "http://box:80/?token=t", "http://[::1]:80/?token=t"]
    assert access.login_urls([("10.0.0.2", 5000)], "given", shown=False) == ["http://10.0.0.2:5000/?token=..."]


# --------------------------------------------------------------------------- the page


def test_the_page_without_the_token_is_a_401_form_not_the_app(client):
    response = client.get("/")
    assert response.status_code == 401 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "needs its access token" in html and '<form method="get" action="/">' in html
    assert "app.js" not in html and "WWW-Authenticate" in response.headers
    for asset in ("/static/app.js", "/static/style.css", "/no-such-route"):  # every route but /healthz
        assert client.get(asset).status_code == 401, asset


def test_the_token_in_the_url_sets_a_cookie_and_leaves_the_address_bar(client):
    response = client.get(f"/?token={TOKEN}")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN};") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/")  # the cookie from now on, as the browser sends it with the page's own requests
    assert page.status_code == 200 and "app.js" in page.get_data(as_text=True)
    assert client.get("/static/app.js").status_code == 200
    assert _predict(client).status_code == 200
    other = client.get(f"/?token={TOKEN}&lang=en")
    assert other.headers["Location"] == "/?lang=en"  # only the token leaves the URL


def test_a_wrong_token_in_the_url_or_the_cookie_is_a_401(client):
    response = client.get("/?token=guess")
    assert response.status_code == 401 and "Set-Cookie" not in response.headers
    html = response.get_data(as_text=True)
    assert "token is wrong" in html and "guess" not in html  # nothing of the request is echoed
    client.set_cookie(COOKIE, "stale-from-a-restart")
    assert client.get("/").status_code == 401
    client.set_cookie("fer-token-8080", TOKEN)  # another server's cookie on another port
    assert client.get("/").status_code == 401


# --------------------------------------------------------------------------- the API and the stream


@pytest.mark.parametrize(("query", "headers"), [
    ("", {"Authorization": f"Bearer {TOKEN}"}),
    ("", {"Authorization": f"bearer  {TOKEN}"}),
    (f"?token={TOKEN}", {}),
])
def test_the_api_takes_the_token_as_a_header_or_in_the_url(client, query, headers):
    response = _predict(client, query, headers)
    assert response.status_code == 200 and response.get_json()["faces"] == []


@pytest.mark.parametrize(("headers", "words"), [
    ({}, "needs its access token"),
    ({"Authorization": "Bearer guess"}, "token is wrong"),
    ({"Authorization": f"Basic {TOKEN}"}, "needs its access token"),  # only the Bearer scheme
    ({"Authorization": f"Bearer {TOKEN}x"}, "token is wrong"),
])
def test_the_api_without_the_right_token_is_a_json_401_that_says_how(client, headers, words):
    response = _predict(client, headers=headers)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    error = response.get_json()["error"]
    assert words in error and "?token=" in error and "Authorization: Bearer" in error


def test_healthz_stays_open_for_monitoring(client):
    response = client.get("/healthz")  # 503 without a bundled model: still not a 401
    assert response.status_code in (200, 503) and response.get_json()["status"] in ("ok", "no-model")


def test_the_stream_wants_the_token_too(tmp_path):
    from fer.apps import demo
    from fer.apps.stream import MIMETYPE, VideoStream

    stream = VideoStream(demo.astronaut_clip(tmp_path / "clip.mp4", seconds=0.5), analyze=lambda f: []).start()
    try:
        client = serve.create_app(analyze=lambda image: [], stream=stream, token=TOKEN).test_client()
        assert client.get("/video_feed").status_code == 401
        wrong = client.get("/video_feed", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401 and "token is wrong" in wrong.get_json()["error"]
        assert stream.status()["viewers"] == 0  # refused before it took a viewer's place
        for how in ({"headers": {"Authorization": f"Bearer {TOKEN}"}}, {"query_string": {"token": TOKEN}}):
            response = client.get("/video_feed", buffered=False, **how)
            assert response.status_code == 200 and response.mimetype == MIMETYPE.split(";")[0]
            assert next(iter(response.response)).startswith(b"--frame\r\nContent-Type: image/jpeg")
            response.close()
        response = client.get("/video_feed", buffered=False)  # the cookie the URL set
        assert response.status_code == 200
        response.close()
    finally:
        stream.stop()


def test_without_a_token_nothing_is_asked():
    client = serve.create_app(analyze=lambda image: []).test_client()
    assert client.get("/").status_code == 200 and _predict(client).status_code == 200
    assert "Set-Cookie" not in client.get("/?token=anything").headers
