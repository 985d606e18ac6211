"""The token request of each grant and the parsing of its response.

Building the request and reading the response are pure functions (tested without a network);
`TokenSource` glues them to an `httpx.AsyncClient`. Error messages name the setting at fault
and the HTTP status, and show the URL *template* of the spec, so a secret substituted into a
URL never reaches a message. Response bodies are never quoted: only an OAuth2 `error` code
(`invalid_client`) and, when the token is missing, the names of the top-level keys.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import httpx

from ..api.durations import parse_duration
from ..api.models import Auth
from .errors import SettingsError, TokenEndpointError
from .paths import MISSING, dotted_get
from .redact import Redactor

__all__ = [
    "PLACEHOLDERS",
    "HttpRequest",
    "Token",
    "TokenSource",
    "blame",
    "build_request",
    "check_settings",
    "parse_token_response",
]

# Placeholder name -> the setting it comes from (`{{clientID}}` -> auth.clientID).
PLACEHOLDERS = ("clientID", "clientSecret", "username", "password", "refreshToken")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z]+)\s*\}\}")
_OAUTH_ERROR = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # RFC 6749 error codes are plain ASCII
_TRANSIENT_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Token:
    """A token as obtained: `value` and `refresh_token` are secrets."""

    value: str = field(repr=False)
    obtained_at: float  # epoch seconds when the request was sent (expiry counts from there)
    expires_at: float
    refresh_token: str | None = field(default=None, repr=False)  # a rotated refresh token

    @property
    def lifetime(self) -> float:
        return self.expires_at - self.obtained_at


@dataclass(frozen=True)
class HttpRequest:
    """One token request. `url_label` is what messages show (the spec's template)."""

    method: str
    url: str = field(repr=False)
    headers: dict[str, str] = field(repr=False)
    content: bytes = field(repr=False)
    url_label: str
    url_field: str  # the setting holding the URL: auth.tokenURL or auth.request.url


def _redacted_url(url: str) -> str:
    """Scheme, host and path only: a query string or user info may carry secrets."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_settings(auth: Auth, credentials: Mapping[str, str]) -> None:
    """Refuse settings that can never work, before any request (raises SettingsError)."""
    if auth.grant != "request":
        return
    assert auth.request is not None  # the model's rules require it for this grant
    texts = {"auth.request.url": auth.request.url, "auth.request.body": auth.request.body}
    texts.update({f"auth.request.headers.{k}": v for k, v in auth.request.headers.items()})
    for where, text in texts.items():
        for name in _PLACEHOLDER.findall(text):
            if name not in PLACEHOLDERS:
                raise SettingsError(
                    f"{where}: unknown placeholder {{{{{name}}}}} "
                    f"(known: {', '.join('{{' + p + '}}' for p in PLACEHOLDERS)})"
                )
            if name not in credentials:
                raise SettingsError(f"{where} uses {{{{{name}}}}} but auth.{name} is not set")


def _substitute(text: str, credentials: Mapping[str, str], encode: Any) -> str:
    return _PLACEHOLDER.sub(lambda m: encode(credentials[m.group(1)]), text)


def _json_escape(value: str) -> str:
    return json.dumps(value)[1:-1]


def _basic(client_id: str, client_secret: str) -> str:
    # RFC 6749 2.3.1: both parts are form-urlencoded before the Basic encoding.
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def build_request(auth: Auth, credentials: Mapping[str, str], refresh_token: str | None) -> HttpRequest:
    """The HTTP request that obtains a token with `auth`'s grant.

    `credentials` maps wire names (`clientSecret`) to resolved values; `refresh_token` is the
    current refresh token (the rotated one once the server has rotated it).
    """
    if auth.grant == "request":
        spec = auth.request
        assert spec is not None
        content_type = next((v for k, v in spec.headers.items() if k.lower() == "content-type"), "")
        if "json" in content_type:
            body_encode: Any = _json_escape
        elif "x-www-form-urlencoded" in content_type:
            body_encode = quote_plus
        else:
            body_encode = str
        creds = dict(credentials)
        if refresh_token is not None:
            creds["refreshToken"] = refresh_token
        return HttpRequest(
            method=spec.method,
            url=_substitute(spec.url, creds, lambda v: quote(v, safe="")),
            headers={k: _substitute(v, creds, str) for k, v in spec.headers.items()},
            content=_substitute(spec.body, creds, body_encode).encode(),
            url_label=_redacted_url(spec.url),
            url_field="auth.request.url",
        )

    assert auth.token_url is not None
    form: dict[str, str] = {"grant_type": auth.grant}
    if auth.grant == "password":
        form["username"] = credentials["username"]
        form["password"] = credentials["password"]
    elif auth.grant == "refresh_token":
        form["refresh_token"] = refresh_token or credentials["refreshToken"]
    if auth.scope:
        form["scope"] = auth.scope
    if auth.audience:
        form["audience"] = auth.audience
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    client_id = credentials.get("clientID")
    client_secret = credentials.get("clientSecret")
    if client_id is not None:
        if auth.client_auth == "basic":
            headers["Authorization"] = _basic(client_id, client_secret or "")
        else:
            form["client_id"] = client_id
            if client_secret is not None:
                form["client_secret"] = client_secret
    content = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in form.items()).encode()
    return HttpRequest(
        method="POST", url=auth.token_url, headers=headers, content=content,
        url_label=_redacted_url(auth.token_url), url_field="auth.tokenURL",
    )


def blame(auth: Auth, status: int, oauth_error: str | None) -> str:
    """The setting most likely wrong when the token endpoint answers `status` (>= 400)."""
    if auth.grant == "request":
        return "auth.request.url" if status in (404, 405) or status >= 500 else "auth.request"
    if status in (404, 405) or status >= 500:
        return "auth.tokenURL"
    if oauth_error == "invalid_scope":
        return "auth.scope"
    if oauth_error == "unsupported_grant_type":
        return "auth.grant"
    if oauth_error == "invalid_grant":
        return {"password": "auth.username/auth.password",
                "refresh_token": "auth.refreshToken"}.get(auth.grant, "auth.clientSecret")
    if oauth_error == "unauthorized_client":
        return "auth.clientID"
    # 401 / invalid_client and anything else: the client's credentials.
    return "auth.clientID/auth.clientSecret"


def _oauth_error(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    code = document.get("error") if isinstance(document, dict) else None
    return code if isinstance(code, str) and _OAUTH_ERROR.match(code) else None


def parse_token_response(auth: Auth, request: HttpRequest, status: int, body: bytes,
                         started_at: float) -> Token:
    """Read the token (and its lifetime, and a rotated refresh token) from a response."""
    where = f"{request.method} {request.url_label}"
    if status >= 400:
        code = _oauth_error(body)
        field_name = blame(auth, status, code)
        detail = f" ({code})" if code else ""
        transient = status >= 500 or status in _TRANSIENT_STATUS
        raise TokenEndpointError(
            f"{field_name}: {where} answered HTTP {status}{detail}",
            field=field_name, status=status, transient=transient,
        )
    try:
        document = json.loads(body)
    except ValueError:
        raise TokenEndpointError(
            f"{request.url_field}: {where} answered HTTP {status} with a body that is not JSON",
            field=request.url_field, status=status, transient=False,
        ) from None
    value = dotted_get(document, auth.token_path)
    if not isinstance(value, str) or not value:
        keys = ", ".join(sorted(str(k) for k in document)[:20]) if isinstance(document, dict) else ""
        found = "no value" if value is MISSING else f"a value of type {type(value).__name__}, not a string"
        raise TokenEndpointError(
            f"auth.tokenPath: {where} answered HTTP {status} with {found} at "
            f"{auth.token_path!r} (top-level keys: {keys or 'none'})",
            field="auth.tokenPath", status=status, transient=False,
        )
    lifetime = dotted_get(document, auth.expires_in_path)
    if lifetime is MISSING or lifetime is None:
        seconds = parse_duration(auth.lifetime)
    else:
        try:
            seconds = float(lifetime)
        except (TypeError, ValueError):
            raise TokenEndpointError(
                f"auth.expiresInPath: {where} answered HTTP {status} with a value of type "
                f"{type(lifetime).__name__} at {auth.expires_in_path!r}, not a number of seconds",
                field="auth.expiresInPath", status=status, transient=False,
            ) from None
        if seconds <= 0:
            seconds = parse_duration(auth.lifetime)
    rotated = document.get("refresh_token") if isinstance(document, dict) else None
    return Token(
        value=value,
        obtained_at=started_at,
        expires_at=started_at + seconds,
        refresh_token=rotated if isinstance(rotated, str) and rotated else None,
    )


class TokenSource:
    """Obtains tokens over HTTP; remembers the rotated refresh token of grant refresh_token."""

    def __init__(self, auth: Auth, credentials: Mapping[str, str], redactor: Redactor,
                 client: httpx.AsyncClient) -> None:
        check_settings(auth, credentials)
        self._auth = auth
        self._credentials = dict(credentials)
        self._redact = redactor
        self._client = client
        self._refresh_token: str | None = credentials.get("refreshToken")
        # A rotated refresh token matters to the grants that send one: refresh_token, and a
        # custom request whose template uses {{refreshToken}}.
        self._rotates = auth.grant == "refresh_token" or (
            auth.request is not None and "refreshToken" in _PLACEHOLDER.findall(
                auth.request.url + auth.request.body + "".join(auth.request.headers.values())))

    @property
    def refresh_token(self) -> str | None:
        """The refresh token the next request sends (secret)."""
        return self._refresh_token

    @refresh_token.setter
    def refresh_token(self, value: str) -> None:
        """Adopt a rotated refresh token (e.g. the one another replica left in Redis)."""
        self._redact.add(value)
        self._refresh_token = value

    async def obtain(self) -> Token:
        """One token request; raises TokenEndpointError, whose message is safe to show."""
        request = build_request(self._auth, self._credentials, self._refresh_token)
        where = f"{request.method} {request.url_label}"
        started_at = time.time()
        try:
            response = await self._client.request(
                request.method, request.url, headers=request.headers, content=request.content,
            )
            body = await response.aread()
        except httpx.TimeoutException as exc:
            # Only the exception's type: httpx messages can contain the request URL.
            raise TokenEndpointError(
                f"{request.url_field}: {where} timed out ({type(exc).__name__})",
                field=request.url_field, status=None, transient=True,
            ) from None
        except httpx.HTTPError as exc:
            raise TokenEndpointError(
                f"{request.url_field}: cannot reach {where} ({type(exc).__name__}, no HTTP response)",
                field=request.url_field, status=None, transient=True,
            ) from None
        try:
            token = parse_token_response(self._auth, request, response.status_code, body, started_at)
        except TokenEndpointError as exc:
            raise TokenEndpointError(
                self._redact(str(exc)), field=exc.field, status=exc.status, transient=exc.transient,
            ) from None
        self._redact.add(token.value)
        if token.refresh_token is not None and self._rotates:
            self.refresh_token = token.refresh_token
        return token
