"""Token requests and responses of every grant, dotted paths, redaction: no network."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from kubeload.api.models import Auth
from kubeload.refresher.errors import SettingsError, TokenEndpointError
from kubeload.refresher.grants import (
    HttpRequest,
    blame,
    build_request,
    check_settings,
    parse_token_response,
)
from kubeload.refresher.paths import MISSING, dotted_get
from kubeload.refresher.redact import MASK, Redactor

SECRET = "s3cr3t/with+odd&chars=="
CREDS = {"clientID": "my client", "clientSecret": SECRET, "username": "alice",
         "password": "pa55word!", "refreshToken": "rt-initial-1234"}


def _auth(**fields: Any) -> Auth:
    base: dict[str, Any] = {"tokenURL": "https://auth.example/oauth/token",
                            "clientID": {"value": "x"}, "clientSecret": {"value": "y"}}
    return Auth.model_validate(base | fields)


def _form(request: HttpRequest) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def test_client_credentials_in_body() -> None:
    request = build_request(_auth(scope="read write", audience="api"), CREDS, None)
    assert request.method == "POST" and request.url == "https://auth.example/oauth/token"
    assert _form(request) == {"grant_type": "client_credentials", "client_id": "my client",
                              "client_secret": SECRET, "scope": "read write", "audience": "api"}
    assert "Authorization" not in request.headers


def test_client_credentials_with_basic_auth_is_form_encoded_first() -> None:
    request = build_request(_auth(clientAuth="basic"), CREDS, None)
    assert _form(request) == {"grant_type": "client_credentials"}
    scheme, encoded = request.headers["Authorization"].split(" ")
    assert scheme == "Basic"
    # RFC 6749 2.3.1: id and secret are form-urlencoded before base64.
    assert base64.b64decode(encoded).decode() == "my+client:s3cr3t%2Fwith%2Bodd%26chars%3D%3D"


def test_password_grant() -> None:
    auth = _auth(grant="password", username={"value": "u"}, password={"value": "p"})
    form = _form(build_request(auth, CREDS, None))
    assert form["grant_type"] == "password"
    assert (form["username"], form["password"]) == ("alice", "pa55word!")


def test_refresh_token_grant_uses_the_rotated_token() -> None:
    auth = _auth(grant="refresh_token", refreshToken={"value": "r"})
    assert _form(build_request(auth, CREDS, None))["refresh_token"] == "rt-initial-1234"
    assert _form(build_request(auth, CREDS, "rt-rotated-5678"))["refresh_token"] == "rt-rotated-5678"


def _request_auth(**request: Any) -> Auth:
    return Auth.model_validate({
        "grant": "request",
        "clientID": {"value": "x"}, "clientSecret": {"value": "y"},
        "request": {"url": "https://api.example/login?key={{clientID}}"} | request,
        "tokenPath": "data.session.token",
    })


def test_request_grant_substitutes_placeholders_per_context() -> None:
    auth = _request_auth(
        method="PUT", headers={"Content-Type": "application/json", "X-Key": "{{ clientID }}"},
        body='{"secret": "{{clientSecret}}"}')
    request = build_request(auth, CREDS | {"clientSecret": 'quote"and\\slash'}, None)
    assert request.method == "PUT"
    assert request.url == "https://api.example/login?key=my%20client"  # URL-encoded in a URL
    assert request.headers["X-Key"] == "my client"
    assert json.loads(request.content) == {"secret": 'quote"and\\slash'}  # JSON-escaped in JSON
    assert request.url_label == "https://api.example/login"  # no query in messages


def test_request_grant_form_body_is_url_encoded() -> None:
    auth = _request_auth(headers={"content-type": "application/x-www-form-urlencoded"},
                         body="id={{clientID}}&secret={{clientSecret}}")
    assert _form(build_request(auth, CREDS, None)) == {"id": "my client", "secret": SECRET}


def test_unknown_or_unset_placeholder_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match=r"auth.request.body: unknown placeholder \{\{apiKey\}\}"):
        check_settings(_request_auth(body="{{apiKey}}"), CREDS)
    with pytest.raises(SettingsError, match=r"headers.X-P uses \{\{password\}\} but auth.password "):
        check_settings(_request_auth(headers={"X-P": "{{password}}"}), {"clientID": "a"})


def _parse(auth: Auth, status: int, body: Any, started: float = 1000.0) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_token_response(auth, build_request(auth, CREDS, None), status, raw, started)


def test_parse_oauth_response() -> None:
    token = _parse(_auth(), 200, {"access_token": "tok-1", "expires_in": 120, "refresh_token": "rt2"})
    assert (token.value, token.obtained_at, token.expires_at) == ("tok-1", 1000.0, 1120.0)
    assert token.refresh_token == "rt2"
    assert _parse(_auth(), 200, {"access_token": "t", "expires_in": "60"}).lifetime == 60.0


def test_parse_nested_paths_and_default_lifetime() -> None:
    auth = _request_auth().model_copy(update={"expires_in_path": "data.session.ttl", "lifetime": "90s"})
    token = _parse(auth, 200, {"data": {"session": {"token": "nested", "ttl": 30}}})
    assert (token.value, token.lifetime) == ("nested", 30.0)
    token = _parse(auth, 200, {"data": {"session": {"token": "nested"}}})
    assert token.lifetime == 90.0  # no expiry in the response: `lifetime`


@pytest.mark.parametrize(("auth_fields", "status", "body", "field", "transient"), [
    ({}, 401, {"error": "invalid_client"}, "auth.clientID/auth.clientSecret", False),
    ({}, 400, {"error": "invalid_scope"}, "auth.scope", False),
    ({"grant": "password", "username": {"value": "u"}, "password": {"value": "p"}}, 400,
     {"error": "invalid_grant"}, "auth.username/auth.password", False),
    ({"grant": "refresh_token", "refreshToken": {"value": "r"}}, 400, {"error": "invalid_grant"},
     "auth.refreshToken", False),
    ({}, 404, b"not found", "auth.tokenURL", False),
    ({}, 503, b"<html>", "auth.tokenURL", True),
    ({}, 429, b"", "auth.clientID/auth.clientSecret", True),
])
def test_errors_name_the_field_and_status(auth_fields: dict[str, Any], status: int, body: Any,
                                          field: str, transient: bool) -> None:
    with pytest.raises(TokenEndpointError) as info:
        _parse(_auth(**auth_fields), status, body)
    assert info.value.field == field and info.value.status == status
    assert info.value.transient is transient
    assert str(info.value).startswith(f"{field}: POST https://auth.example/oauth/token answered HTTP {status}")


def test_error_body_is_never_quoted() -> None:
    body = {"error": "invalid_client", "error_description": f"secret {SECRET} is wrong"}
    with pytest.raises(TokenEndpointError) as info:
        _parse(_auth(), 401, body)
    assert SECRET not in str(info.value) and "(invalid_client)" in str(info.value)
    # An `error` that is not a plain code (it could echo anything) is left out.
    with pytest.raises(TokenEndpointError) as info:
        _parse(_auth(), 401, {"error": f"bad {SECRET}"})
    assert SECRET not in str(info.value)


def test_missing_token_names_token_path_and_keys_not_values() -> None:
    with pytest.raises(TokenEndpointError) as info:
        _parse(_auth(), 200, {"token": "value-not-shown", "expires_in": 5})
    message = str(info.value)
    assert info.value.field == "auth.tokenPath" and "HTTP 200" in message
    assert "'access_token'" in message and "expires_in, token" in message
    assert "value-not-shown" not in message
    with pytest.raises(TokenEndpointError, match="not JSON"):
        _parse(_auth(), 200, b"<html>hello</html>")
    with pytest.raises(TokenEndpointError, match="a value of type int, not a string"):
        _parse(_auth(), 200, {"access_token": 12})
    with pytest.raises(TokenEndpointError, match=r"auth\.expiresInPath"):
        _parse(_auth(), 200, {"access_token": "t", "expires_in": "soon"})


def test_blame_for_request_grant() -> None:
    auth = _request_auth()
    assert blame(auth, 403, None) == "auth.request"
    assert blame(auth, 500, None) == "auth.request.url"


def test_dotted_get() -> None:
    doc = {"a": {"b": [{"c": "x"}], "0": "key"}, "n": None}
    assert dotted_get(doc, "a.b.0.c") == "x"
    assert dotted_get(doc, "a.0") == "key"  # an object key made of digits
    assert dotted_get(doc, "n") is None
    for path in ("a.b.1.c", "a.x", "a.b.c", "n.x", "z"):
        assert dotted_get(doc, path) is MISSING


def test_redactor_masks_known_and_learned_secrets() -> None:
    redact = Redactor([SECRET, "abc"])
    assert redact(f"x {SECRET} y") == f"x {MASK} y"
    assert redact("abc stays: too short to mask") == "abc stays: too short to mask"
    redact.add("token-number-1")
    assert redact("got token-number-1") == f"got {MASK}"
    for n in range(40):  # learned secrets are kept for a while, then forgotten
        redact.add(f"token-{n:04d}")
    assert redact("token-0039") == MASK and redact(SECRET) == MASK
