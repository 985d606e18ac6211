"""Resolve `{value} | {env} | {secretKeyRef}` credentials inside a process.

In pods, the operator mounts each `secretKeyRef` credential as the environment variable
`credential_env_name(field)`; in local mode `{env: NAME}` reads the user's environment.
Resolved values are secrets: callers never log, print or put them in errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .api.models import Credential

__all__ = ["CredentialError", "credential_env_name", "resolve_credential"]


class CredentialError(Exception):
    """A credential that cannot be resolved; the message names the field, never the value."""


def credential_env_name(field: str) -> str:
    """`clientSecret` -> `KUBELOAD_CREDENTIAL_CLIENTSECRET` (the env var a pod gets it in)."""
    return "KUBELOAD_CREDENTIAL_" + field.upper()


def resolve_credential(field: str, credential: Credential, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if credential.value is not None:
        return credential.value
    if credential.env is not None:
        if credential.env not in env:
            raise CredentialError(f"auth.{field}: environment variable {credential.env} is not set")
        return env[credential.env]
    ref = credential.secret_key_ref
    assert ref is not None  # the model allows exactly one source
    name = credential_env_name(field)
    if name not in env:
        raise CredentialError(
            f"auth.{field}: secret {ref.name}/{ref.key} is not available "
            f"(expected in environment variable {name}; in local mode use {{env: NAME}} instead)"
        )
    return env[name]
