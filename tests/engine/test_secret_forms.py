"""Secrets never come back through an answer: every form a peer may echo a configured
secret in (plain, URL-encoded, base64 alone or inside a longer base64 text, HTTP Basic and
SMTP AUTH PLAIN with its user) is masked, in receivers' errors (test_receivers) and in what
a probe shows of a response (here)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from aiohttp import web

from console.engine.config.schema import HttpTarget
from console.engine.probes.http import HttpProbe
from console.engine.probes.http_client import HttpClients
from console.engine.text.redact import MASK, redact, register_secret
from tests.peers import HttpPeer


def test_every_form_of_a_registered_secret_is_masked() -> None:
    secret, user = "c0rrect/horse+battery", "ops-bot"
    register_secret(secret, user=user)
    raw = secret.encode()
    echoes = {
        "plain": f"auth failed for {secret}",
        "url-encoded": f"GET /x?next={quote(secret, safe='')}",
        "base64": f"535 5.7.8 failed ({base64.b64encode(raw).decode()})",
        "base64 url-safe": base64.urlsafe_b64encode(raw).decode(),
        "basic": f"Authorization header was Basic "
                 f"{base64.b64encode(f'{user}:{secret}'.encode()).decode()}",
        "auth plain": base64.b64encode(b"\0" + user.encode() + b"\0" + raw).decode(),
    }
    for offset in range(3):  # inside a longer base64 text, at any alignment
        echoes[f"embedded {offset}"] = base64.b64encode(
            b"x" * offset + b"{\"password\": \"" + raw + b"\"}").decode()
    for name, text in echoes.items():
        shown = redact(text)
        assert MASK in shown, name
        leftovers = [f for f in (secret, quote(secret, safe=""),
                                 base64.b64encode(raw).decode().rstrip("="))
                     if f in shown]
        assert leftovers == [], (name, shown)
    assert redact("an ordinary sentence, base64-looking or not: aGVsbG8=") == \
        "an ordinary sentence, base64-looking or not: aGVsbG8="


class EchoPeer(HttpPeer):
    """Answers with the request's headers in its body, as httpbin's /headers does."""

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/headers", self.echo)

    async def echo(self, request: web.Request) -> web.Response:
        await self.record(request)
        return web.json_response({"headers": dict(request.headers)})


@pytest.fixture
def echo() -> Iterator[EchoPeer]:
    with EchoPeer() as peer:
        yield peer


async def test_a_probe_never_shows_the_basic_credentials_a_server_echoes(
        echo: EchoPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_PASSWORD", "s3cret-Pa55w0rd")
    target = HttpTarget(name="api", url=f"http://probe:${{API_PASSWORD}}@127.0.0.1:{echo.port}"
                        "/headers", timeout=2.0)
    async with HttpClients() as clients:
        result = await HttpProbe(target, clients).check()
    (req,) = echo.requests.items
    sent = req.headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(sent) == b"probe:s3cret-Pa55w0rd"  # the server did get it
    assert result.response is not None
    shown = result.response.body_excerpt + repr(result.to_json())
    assert sent not in shown
    assert sent.rstrip("=") not in shown
    assert "s3cret-Pa55w0rd" not in shown
    assert "headers" in result.response.body_excerpt  # the body itself is still shown


class FixedPeer(HttpPeer):
    """Answers every check with the same body, as a health endpoint does."""

    BODY = "deploy token is tok-Zq81-late-registered"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/fixed", self.fixed)

    async def fixed(self, request: web.Request) -> web.Response:
        await self.record(request)
        return web.Response(text=self.BODY, headers={"X-Build": "tok-Zq81-late-registered"})


async def test_a_secret_registered_later_is_masked_in_a_response_shown_before() -> None:
    # The probe keeps the shown text of a response it has already made safe; a secret
    # registered afterwards (a reload resolving a new ${ENV}) must still be masked in it.
    secret = "tok-Zq81-late-registered"
    with FixedPeer() as peer:
        target = HttpTarget(name="fixed", url=f"http://127.0.0.1:{peer.port}/fixed",
                            timeout=2.0)
        async with HttpClients() as clients:
            probe = HttpProbe(target, clients)
            first = await probe.check()
            again = await probe.check()
            register_secret(secret)
            after = await probe.check()
    for r in (first, again):
        assert r.response is not None
        assert secret in r.response.body_excerpt
        assert ("X-Build", secret) in r.response.headers
    assert after.response is not None
    assert secret not in after.response.body_excerpt + repr(after.to_json())
    assert after.response.body_excerpt == f"deploy token is {MASK}"
    assert ("X-Build", MASK) in after.response.headers
