"""Real peers for the notification tests, each in its own thread (so a test, async or not,
and an `opsconsole run --headless` subprocess can all use them):

- `SmtpPeer`: aiosmtpd, a real SMTP server, with STARTTLS (a trustme certificate) and AUTH
  required, refusing lines over 1000 octets as any MTA does;
- `SlackPeer`: Slack's Web API (chat.postMessage, conversations.create/invite/list) and an
  incoming webhook, answering with the documented response shapes (``{"ok": …}``, 429 with
  Retry-After) and validating every message's blocks with `slack_sdk`'s Block Kit models;
- `PagerDutyPeer`: the Events API v2 (202 / 400 "invalid event" / 429);
- `TwilioPeer`: the Messages resource (201 with a Message, 400/401 with Twilio's error
  shape), recording each request so it can be compared with the `twilio` library's own;
- `WebhookPeer`: a JSON collector that can hang or fail first.

Every peer records what it accepted in a `Log`, which a test waits on (no sleeping).
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web


class Log:
    """A thread-safe list a test can wait on."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def add(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait(self, pred: Callable[[list[Any]], bool], within: float = 30.0) -> list[Any]:
        """Until `pred(items)` holds (woken by each new item); AssertionError after
        `within` seconds with what came."""
        deadline = time.monotonic() + within
        with self._cond:
            while not pred(self.items):
                left = deadline - time.monotonic()
                assert left > 0, f"condition not met; got {len(self.items)}: {self.items!r}"[
                    :3000]
                self._cond.wait(left)
            return list(self.items)

    async def until(self, pred: Callable[[list[Any]], bool], within: float = 30.0
                    ) -> list[Any]:
        return await asyncio.to_thread(self.wait, pred, within)

    def __len__(self) -> int:
        with self._cond:
            return len(self.items)

    def __iter__(self) -> Iterator[Any]:
        with self._cond:
            return iter(list(self.items))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- SMTP --------------------------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    login: bytes | None
    tls: bool

    @property
    def message(self) -> email.message.EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg

    def part(self, subtype: str) -> str:
        body = self.message.get_body((subtype,))
        assert body is not None, f"no text/{subtype} part"
        return str(body.get_content())


class SmtpPeer:
    """aiosmtpd with STARTTLS required and AUTH (user `ops`) required before MAIL.

    `echo_auth=True` makes a failed AUTH answer with the credentials it received, base64,
    as some servers do (the password must not reach the console's logs or outbox).
    """

    def __init__(self, tmp: Path, *, password: str = "pw", echo_auth: bool = False,
                 plain_only: bool = False, login_only: bool = False,
                 starttls: bool = True, implicit_tls: bool = False) -> None:
        import trustme
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ca = trustme.CA()
        self.ca_file = tmp / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        self.mails = Log()
        self.refused = Log()
        peer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                peer.mails.add(Mail(envelope.mail_from, list(envelope.rcpt_tos),
                                    bytes(envelope.original_content or envelope.content),
                                    getattr(session.auth_data, "login", None),
                                    session.ssl is not None or server.transport
                                    .get_extra_info("ssl_object") is not None))
                return "250 2.0.0 Ok: queued"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                          data: Any) -> Any:
            if isinstance(data, LoginPassword) and data.login == b"ops" and \
                    data.password == password.encode():
                return AuthResult(success=True, auth_data=data)
            peer.refused.add(mechanism)
            if echo_auth and isinstance(data, LoginPassword):
                shown = base64.b64encode(data.password).decode() if mechanism == "LOGIN" else \
                    base64.b64encode(b"\0" + data.login + b"\0" + data.password).decode()
                return AuthResult(success=False, handled=False, message=(
                    f"535 5.7.8 Authentication failed for {data.login.decode()} ({shown})"))
            return AuthResult(success=False, handled=False)

        exclude = ["LOGIN"] if plain_only else ["PLAIN"] if login_only else None
        self.port = free_port()
        self.implicit_tls = implicit_tls
        starttls = starttls and not implicit_tls
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port,
            ssl_context=ctx if implicit_tls else None,
            tls_context=ctx if starttls else None, require_starttls=starttls,
            auth_required=True, auth_require_tls=starttls,
            authenticator=authenticator, auth_exclude_mechanism=exclude,
            server_hostname="localhost", ready_timeout=10)

    @property
    def url(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://127.0.0.1:{self.port}"

    def __enter__(self) -> SmtpPeer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


# -- HTTP peers -----------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    @property
    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        h = self.headers.get("Authorization", "")
        if not h.startswith("Basic "):
            return None
        user, _, pw = base64.b64decode(h[6:]).decode().partition(":")
        return user, pw


class HttpPeer:
    """An aiohttp server on 127.0.0.1 in its own thread; subclasses add routes."""

    def __init__(self) -> None:
        self.requests = Log()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def record(self, request: web.Request) -> Request:
        r = Request(request.method, request.path_qs, dict(request.headers),
                    await request.read())
        self.requests.add(r)
        return r

    async def _start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HttpPeer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class WebhookPeer(HttpPeer):
    """POST /{route}: 'fail' answers 500 the first `fail_first` times, 'hang' never answers,
    'limited' answers 429 Retry-After: 1 first, 'slow' answers 200 after 0.3 s; anything else
    200."""

    def __init__(self, fail_first: int = 2) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.release = threading.Event()  # lets a hanging request go

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{route}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        r = await self.record(request)
        route = request.match_info["route"]
        n = sum(1 for x in self.requests if x.path == r.path)
        if route == "fail" and n <= self.fail_first:
            return web.Response(status=500, text="boom")
        if route == "limited" and n <= 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        if route == "hang":
            await asyncio.to_thread(self.release.wait, 60)
        if route == "slow":  # a receiver that takes its time: sends are often under way
            await asyncio.sleep(0.3)
        return web.Response(text="ok")

    def got(self, route: str) -> list[Request]:
        return [r for r in self.requests if r.path == f"/{route}"]


# -- Twilio ------------------------------------------------------------------------------------

E164 = re.compile(r"^\+[1-9]\d{1,14}$")


class TwilioPeer(HttpPeer):
    """The Messages resource of Twilio's REST API 2010-04-01, with its answers' shapes."""

    def __init__(self, sid: str = "AC" + "0" * 32, token: str = "tw-token-s3cret") -> None:
        super().__init__()
        self.sid, self.token = sid, token

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.create)

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message, "more_info":
                                  f"https://www.twilio.com/docs/errors/{code}",
                                  "status": status}, status=status)

    async def create(self, request: web.Request) -> web.Response:
        r = await self.record(request)
        if r.basic_auth != (self.sid, self.token) or request.match_info["sid"] != self.sid:
            return self._error(401, 20003, "Authenticate")
        form = {k: v[0] for k, v in r.form.items()}
        for name in ("To", "From"):
            if not E164.fullmatch(form.get(name, "")):
                return self._error(400, 21211 if name == "To" else 21212,
                                   f"The '{name}' number {form.get(name)} is not a valid "
                                   "phone number.")
        if not form.get("Body"):
            return self._error(400, 21602, "Message body is required.")
        sid = "SM" + f"{len(self.requests):032x}"
        return web.json_response({
            "account_sid": self.sid, "api_version": "2010-04-01", "body": form["Body"],
            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000", "date_sent": None,
            "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000", "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": form["From"],
            "messaging_service_sid": None, "num_media": "0", "num_segments": "1",
            "price": None, "price_unit": None, "sid": sid, "status": "queued",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.sid}/Messages/{sid}/"
                                          "Media.json"},
            "to": form["To"], "uri": f"/2010-04-01/Accounts/{self.sid}/Messages/{sid}.json",
        }, status=201)


# -- PagerDuty ---------------------------------------------------------------------------------


class PagerDutyPeer(HttpPeer):
    """Events API v2 `/v2/enqueue`: 202 success, 400 invalid event, 429 for the first
    `limit_first` events."""

    def __init__(self, routing_key: str = "R0UT1NGKEY0000000000000000000000",
                 limit_first: int = 0) -> None:
        super().__init__()
        self.routing_key = routing_key
        self.limit_first = limit_first
        self.accepted = Log()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self.enqueue)

    async def enqueue(self, request: web.Request) -> web.Response:
        r = await self.record(request)
        if len(self.requests) <= self.limit_first:
            return web.json_response({"status": "throttle event", "message": "Requests for "
                                      "this service are arriving too quickly."}, status=429)
        errors = []
        try:
            e = r.json
        except ValueError:
            return web.json_response({"status": "invalid event", "message": "Event object is "
                                      "invalid", "errors": ["Malformed JSON"]}, status=400)
        if e.get("routing_key") != self.routing_key:
            errors.append("'routing_key' is invalid")
        if e.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        if not isinstance(e.get("dedup_key"), str) or len(e["dedup_key"]) > 255:
            errors.append("'dedup_key' is invalid")
        if e.get("event_action") == "trigger":
            p = e.get("payload") or {}
            if not p.get("summary") or len(p["summary"]) > 1024:
                errors.append("'payload.summary' is missing or too long")
            if not p.get("source"):
                errors.append("'payload.source' is missing")
            if p.get("severity") not in ("critical", "error", "warning", "info"):
                errors.append("'payload.severity' is invalid")
        allowed = {"routing_key", "event_action", "dedup_key", "payload", "images", "links",
                   "client", "client_url"}
        errors += [f"'{k}' is not a known field" for k in e if k not in allowed]
        if errors:
            return web.json_response({"status": "invalid event",
                                      "message": "Event object is invalid", "errors": errors},
                                     status=400)
        self.accepted.add(e)
        return web.json_response({"status": "success", "message": "Event processed",
                                  "dedup_key": e["dedup_key"]}, status=202)


# -- Slack -------------------------------------------------------------------------------------

_CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")


def block_kit_errors(message: dict[str, Any]) -> list[str]:
    """What Slack would refuse in a message: each block parsed and validated by slack_sdk's
    Block Kit models (and unchanged by the round trip, so no unknown key slips through),
    at most 50 blocks, a `text` fallback."""
    from slack_sdk.errors import SlackObjectFormationError
    from slack_sdk.models.blocks import Block

    errors = []
    text = message.get("text")
    if not isinstance(text, str) or not text or len(text) > 40000:
        errors.append("text: missing or over 40000 characters")
    blocks = message.get("blocks", [])
    if len(blocks) > 50:
        errors.append(f"{len(blocks)} blocks (at most 50)")
    for i, b in enumerate(blocks):
        parsed = Block.parse(b)
        if parsed is None:
            errors.append(f"block {i}: unknown type {b.get('type')!r}")
            continue
        try:
            parsed.validate_json()
        except SlackObjectFormationError as exc:
            errors.append(f"block {i}: {exc}")
            continue
        if parsed.to_dict() != b:
            errors.append(f"block {i}: changed by the round trip: {b!r}")
        if b.get("type") == "actions" and not b.get("elements"):
            errors.append(f"block {i}: actions without elements")
    return errors


class SlackPeer(HttpPeer):
    """Slack's Web API under /api/ (bot token `xoxb-test-token`) and an incoming webhook at
    /services/T000/B000/XXXX. `limit_first` chat.postMessage calls answer 429 Retry-After: 1.
    """

    TOKEN = "xoxb-test-token-0000"
    HOOK = "/services/T0000/B0000/XXXXXXXXXXXXXXXX"

    def __init__(self, limit_first: int = 0, users: tuple[str, ...] = ("U0AAA", "U0BBB")
                 ) -> None:
        super().__init__()
        self.limit_first = limit_first
        self.users = set(users)
        self.channels: dict[str, dict[str, Any]] = {
            "C0GENERAL": {"id": "C0GENERAL", "name": "general", "members": set()},
            "C0ALERTS": {"id": "C0ALERTS", "name": "production-alerts", "members": set()}}
        self.posts = Log()  # (channel id, message) accepted by chat.postMessage
        self.hook_posts = Log()  # messages accepted by the webhook
        self.created = Log()  # channel names created
        self.invited = Log()  # (channel id, user)
        self._posted = 0

    @property
    def api(self) -> str:
        return f"{self.base}/api"

    @property
    def hook(self) -> str:
        return f"{self.base}{self.HOOK}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self.method)
        app.router.add_post(self.HOOK, self.webhook)

    def _find(self, ref: str) -> dict[str, Any] | None:
        if ref in self.channels:
            return self.channels[ref]
        name = ref.removeprefix("#")
        return next((c for c in self.channels.values() if c["name"] == name), None)

    async def webhook(self, request: web.Request) -> web.Response:
        r = await self.record(request)
        try:
            msg = r.json
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if block_kit_errors(msg):
            return web.Response(status=400, text="invalid_blocks")
        self.hook_posts.add(msg)
        return web.Response(text="ok")

    async def method(self, request: web.Request) -> web.Response:
        r = await self.record(request)
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        ctype = request.headers.get("Content-Type", "")
        body = r.json if ctype.startswith("application/json") else \
            {k: v[0] for k, v in r.form.items()}
        handler = getattr(self, "m_" + request.match_info["method"].replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        return await handler(body)

    async def m_chat_postMessage(self, body: dict[str, Any]) -> web.Response:  # noqa: N802
        self._posted += 1
        if self._posted <= self.limit_first:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": "1"})
        ch = self._find(str(body.get("channel", "")))
        if ch is None:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        errors = block_kit_errors(body)
        if errors:
            return web.json_response({"ok": False, "error": "invalid_blocks",
                                      "errors": errors})
        ts = f"{time.time():.6f}"
        self.posts.add((ch["id"], body))
        return web.json_response({"ok": True, "channel": ch["id"], "ts": ts, "message": {
            "type": "message", "subtype": "bot_message", "text": body["text"], "ts": ts,
            "bot_id": "B0BOT", "blocks": body.get("blocks", [])}})

    async def m_conversations_create(self, body: dict[str, Any]) -> web.Response:
        name = str(body.get("name", ""))
        if not _CHANNEL_NAME.fullmatch(name):
            return web.json_response({"ok": False, "error": "invalid_name_specials"})
        if self._find(name) is not None:
            return web.json_response({"ok": False, "error": "name_taken"})
        cid = f"C{len(self.channels):08d}"
        self.channels[cid] = {"id": cid, "name": name, "members": set()}
        self.created.add(name)
        return web.json_response({"ok": True, "channel": {
            "id": cid, "name": name, "is_channel": True, "is_group": False, "is_im": False,
            "created": int(time.time()), "creator": "U0BOT", "is_archived": False,
            "is_general": False, "name_normalized": name, "is_private": False,
            "is_member": True, "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0}, "previous_names": []}})

    async def m_conversations_invite(self, body: dict[str, Any]) -> web.Response:
        ch = self._find(str(body.get("channel", "")))
        if ch is None:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        users = [u for u in str(body.get("users", "")).split(",") if u]
        if not users or any(u not in self.users for u in users):
            return web.json_response({"ok": False, "error": "user_not_found"})
        if all(u in ch["members"] for u in users):
            return web.json_response({"ok": False, "error": "already_in_channel"})
        for u in users:
            ch["members"].add(u)
            self.invited.add((ch["id"], u))
        return web.json_response({"ok": True, "channel": {"id": ch["id"], "name": ch["name"],
                                                          "is_channel": True}})

    async def m_conversations_list(self, body: dict[str, Any]) -> web.Response:
        return web.json_response({"ok": True, "channels": [
            {"id": c["id"], "name": c["name"], "is_channel": True, "is_archived": False}
            for c in self.channels.values()], "response_metadata": {"next_cursor": ""}})
