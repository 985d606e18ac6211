"""The refresher's exceptions. Messages name the setting (`auth.clientSecret`) and the HTTP
status; they never carry a secret, a token or a response body.

    RefresherError
    ├── SettingsError        invalid or unresolvable settings, found before any request
    ├── TokenEndpointError   a token request failed (HTTP status, network, bad response)
    └── FirstTokenError      the first token could not be obtained within the bounded tries
"""

from __future__ import annotations

__all__ = ["FirstTokenError", "RefresherError", "SettingsError", "TokenEndpointError"]


class RefresherError(Exception):
    """Base of every refresher error."""


class SettingsError(RefresherError):
    """A setting is invalid (unknown placeholder, missing credential...)."""


class TokenEndpointError(RefresherError):
    """A token request failed.

    `field` is the setting most likely at fault (`auth.clientSecret`, `auth.tokenURL`,
    `auth.tokenPath`...), `status` the HTTP status (None when no response came back),
    `transient` whether trying again may help (5xx, 408, 429, network errors).
    """

    def __init__(self, message: str, *, field: str, status: int | None, transient: bool) -> None:
        super().__init__(message)
        self.field = field
        self.status = status
        self.transient = transient


class FirstTokenError(RefresherError):
    """The first token of the run could not be obtained: the process exits with code 1."""
