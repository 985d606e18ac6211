"""The demo API: an OAuth2 auth server and a protected target on loopback.

For newcomers it is something to point a first LoadTest at; for the tests it is the auth
server and target that prove the shared token works (short-lived tokens, 401 on an expired or
unknown token, faults on demand, counters to check).

Endpoints:

- `POST /oauth/token`: OAuth2 token endpoint, form encoded; grants `client_credentials`,
  `password` and `refresh_token` (rotated on every use: the old refresh token stops working).
  The client authenticates with form fields or HTTP Basic.
- `POST /custom/token`: a non-OAuth JSON endpoint for grant `request`: body
  `{"apiKey": <client id>, "apiSecret": <client secret>}`, answer
  `{"data": {"session": {"token": ..., "ttlSeconds": ...}}}` (`?ttl=0` leaves the lifetime out).
- `GET /api/items`, `GET /api/items/{id}`, `POST /api/orders`: protected (`Authorization:
  Bearer <token>`), 401 for a missing, unknown, revoked or expired token.
- `/_control/revoke` (revoke the newest token, `?all=1` every token), `/_control/fail-auth?seconds=3`
  (token endpoints answer 500), `/_control/stats`, `/_control/reset`.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

__all__ = ["DemoConfig", "DemoState", "build_app"]

_EXPIRED_KEPT = 120.0  # seconds an expired token is remembered (401 says "expired", not "unknown")


@dataclass(frozen=True)
class DemoConfig:
    client_id: str = "demo-client"
    client_secret: str = field(default="demo-secret", repr=False)
    username: str = "demo"
    password: str = field(default="demo-password", repr=False)
    refresh_token: str = field(default="demo-refresh-token", repr=False)
    token_lifetime: float = 60.0
    latency: float = 0.0  # added to each protected request


@dataclass
class _Issued:
    expires: float  # time.monotonic()
    grant: str
    revoked: bool = False


class DemoState:
    """Tokens, refresh tokens, fault switches and counters of one server."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.tokens: dict[str, _Issued] = {}
        self.newest: str | None = None
        self.refresh_tokens: set[str] = {config.refresh_token}
        self.fail_until = 0.0
        self.counts: Counter[str] = Counter()
        self.issued: Counter[str] = Counter()
        self.issued_at: deque[float] = deque(maxlen=10_000)  # epoch seconds
        self.rejections: deque[tuple[float, str]] = deque(maxlen=200)  # the last 401s: when, why

    def issue(self, grant: str) -> str:
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        self.tokens[token] = _Issued(now + self.config.token_lifetime, grant)
        self.newest = token
        self.issued[grant] += 1
        self.issued_at.append(time.time())
        if len(self.tokens) > 1000:
            self.tokens = {t: i for t, i in self.tokens.items() if i.expires + _EXPIRED_KEPT > now}
        return token

    def rotate(self) -> str:
        new = secrets.token_urlsafe(24)
        self.refresh_tokens = {new}  # rotation: the previous refresh token is dead
        return new

    def check(self, header: str | None) -> str | None:
        """None when the bearer token is valid, else the reason of the 401."""
        if not header or not header.startswith("Bearer "):
            return "missing_token"
        issued = self.tokens.get(header[7:])
        if issued is None:
            return "unknown_token"
        if issued.revoked:
            return "revoked_token"
        if issued.expires <= time.monotonic():
            return "expired_token"
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "issued": dict(self.issued),
            "issuedTotal": sum(self.issued.values()),
            "issuedAt": list(self.issued_at),
            "served": self.counts["served"],
            "unauthorized": self.counts["unauthorized"],
            "unauthorizedByReason": {k[13:]: v for k, v in self.counts.items()
                                     if k.startswith("unauthorized:")},
            "unauthorizedLast": [list(r) for r in self.rejections],
            "authFailuresInjected": self.counts["auth_failures_injected"],
            "authRejected": self.counts["auth_rejected"],
            "revoked": self.counts["revoked"],
            "tokenLifetime": self.config.token_lifetime,
        }


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Basic realm="demo"'} if status == 401 else None
    return web.json_response({"error": error, "error_description": description}, status=status,
                             headers=headers)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _client(request: web.Request, form: Any) -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            raw = base64.b64decode(header[6:]).decode()
        except ValueError:
            return None, None
        client_id, _, client_secret = raw.partition(":")
        return unquote_plus(client_id), unquote_plus(client_secret)
    return form.get("client_id"), form.get("client_secret")


def build_app(config: DemoConfig) -> web.Application:
    state = DemoState(config)
    app = web.Application()
    app["state"] = state

    def failing() -> bool:
        if time.monotonic() < state.fail_until:
            state.counts["auth_failures_injected"] += 1
            return True
        return False

    def token_response(grant: str, with_refresh: bool) -> web.Response:
        body: dict[str, Any] = {
            "access_token": state.issue(grant), "token_type": "Bearer",
            "expires_in": config.token_lifetime,
        }
        if with_refresh:
            body["refresh_token"] = state.rotate()
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def oauth_token(request: web.Request) -> web.Response:
        if failing():
            return web.json_response({"error": "server_error"}, status=500)
        form = await request.post()
        client_id, client_secret = _client(request, form)
        grant = form.get("grant_type")
        client_ok = _same(client_id, config.client_id) and _same(client_secret, config.client_secret)
        if (grant == "client_credentials" or client_id is not None) and not client_ok:
            state.counts["auth_rejected"] += 1
            return _oauth_error(401, "invalid_client", "client authentication failed")
        if grant == "client_credentials":
            return token_response("client_credentials", with_refresh=False)
        if grant == "password":
            username, password = form.get("username"), form.get("password")
            if not (isinstance(username, str) and isinstance(password, str)
                    and _same(username, config.username) and _same(password, config.password)):
                state.counts["auth_rejected"] += 1
                return _oauth_error(400, "invalid_grant", "wrong user name or password")
            return token_response("password", with_refresh=True)
        if grant == "refresh_token":
            presented = form.get("refresh_token")
            if not isinstance(presented, str) or presented not in state.refresh_tokens:
                state.counts["auth_rejected"] += 1
                return _oauth_error(400, "invalid_grant", "unknown or already used refresh token")
            return token_response("refresh_token", with_refresh=True)
        state.counts["auth_rejected"] += 1
        return _oauth_error(400, "unsupported_grant_type", "use client_credentials, password or refresh_token")

    async def custom_token(request: web.Request) -> web.Response:
        if failing():
            return web.json_response({"message": "internal error"}, status=500)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"message": "expected a JSON body"}, status=400)
        if not (isinstance(body, dict) and _same(body.get("apiKey"), config.client_id)
                and _same(body.get("apiSecret"), config.client_secret)):
            state.counts["auth_rejected"] += 1
            return web.json_response({"message": "bad apiKey or apiSecret"}, status=403)
        session: dict[str, Any] = {"token": state.issue("request")}
        if request.query.get("ttl") != "0":
            session["ttlSeconds"] = config.token_lifetime
        return web.json_response({"data": {"session": session}})

    async def protected(request: web.Request) -> web.Response | None:
        reason = state.check(request.headers.get("Authorization"))
        if reason is not None:
            state.counts["unauthorized"] += 1
            state.counts["unauthorized:" + reason] += 1
            state.rejections.append((time.time(), reason))
            return web.json_response({"error": "invalid_token", "reason": reason}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if config.latency > 0:
            await asyncio.sleep(config.latency)
        return None

    async def items(request: web.Request) -> web.Response:
        denied = await protected(request)
        if denied is not None:
            return denied
        state.counts["served"] += 1
        return web.json_response({"items": [{"id": i, "name": f"item-{i}"} for i in range(3)]})

    async def item(request: web.Request) -> web.Response:
        denied = await protected(request)
        if denied is not None:
            return denied
        state.counts["served"] += 1
        return web.json_response({"id": request.match_info["id"], "name": "an item"})

    async def orders(request: web.Request) -> web.Response:
        denied = await protected(request)
        if denied is not None:
            return denied
        await request.read()
        state.counts["served"] += 1
        return web.json_response({"order": secrets.token_hex(4), "status": "accepted"}, status=201)

    async def revoke(request: web.Request) -> web.Response:
        revoked = 0
        targets = list(state.tokens) if request.query.get("all") == "1" else [state.newest]
        for token in targets:
            issued = state.tokens.get(token) if token else None
            if issued is not None and not issued.revoked:
                issued.revoked = True
                revoked += 1
        state.counts["revoked"] += revoked
        return web.json_response({"revoked": revoked})

    async def fail_auth(request: web.Request) -> web.Response:
        try:
            seconds = float(request.query.get("seconds", "3"))
        except ValueError:
            return web.json_response({"error": "seconds must be a number"}, status=400)
        state.fail_until = time.monotonic() + seconds
        return web.json_response({"failingFor": seconds})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state.stats())

    async def reset(request: web.Request) -> web.Response:
        state.counts.clear()
        state.issued.clear()
        state.issued_at.clear()
        state.rejections.clear()
        return web.json_response({"reset": True})

    async def index(request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        return web.Response(text=json.dumps({
            "tokenURL": f"{base}/oauth/token",
            "customTokenURL": f"{base}/custom/token",
            "api": [f"GET {base}/api/items", f"GET {base}/api/items/{{id}}", f"POST {base}/api/orders"],
            "control": ["/_control/revoke", "/_control/fail-auth?seconds=3", "/_control/stats",
                        "/_control/reset"],
            "tokenLifetimeSeconds": config.token_lifetime,
        }, indent=2) + "\n", content_type="application/json")

    app.router.add_get("/", index)
    app.router.add_post("/oauth/token", oauth_token)
    app.router.add_post("/custom/token", custom_token)
    app.router.add_get("/api/items", items)
    app.router.add_get("/api/items/{id}", item)
    app.router.add_post("/api/orders", orders)
    app.router.add_route("*", "/_control/revoke", revoke)
    app.router.add_route("*", "/_control/fail-auth", fail_auth)
    app.router.add_get("/_control/stats", stats)
    app.router.add_route("*", "/_control/reset", reset)
    return app
