"""The one module that talks to the Kubernetes API.

Why aiohttp and kopf's login rather than another client: kopf already depends on aiohttp and
finds credentials (kubeconfig, in-cluster service account) through its public
`login_with_kubeconfig` / `login_with_service_account`; a dozen REST calls on a handful of
kinds do not need a generated client (kubernetes_asyncio would be a new, large dependency).
Calls are plain JSON over the REST paths below, with JSON merge patches.
"""

from __future__ import annotations

import base64
import datetime as _dt
import logging
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp

__all__ = ["ApiError", "Kube", "KubeConnection", "connect", "login"]

log = logging.getLogger("kubeload.operator.kube")

# kind -> (API prefix, plural). Only the kinds the operator touches.
_KINDS: dict[str, tuple[str, str]] = {
    "LoadTest": ("/apis/kubeload.dev/v1alpha1", "loadtests"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Job": ("/apis/batch/v1", "jobs"),
    "Service": ("/api/v1", "services"),
    "Secret": ("/api/v1", "secrets"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
}


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class KubeConnection:
    """Where and how to reach the API server (from kopf's login helpers)."""

    server: str
    headers: Mapping[str, str]
    ssl_context: ssl.SSLContext | bool


def _write_temp(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    if not raw.lstrip().startswith(b"-----"):  # kubeconfig *-data fields are base64 of PEM
        raw = base64.b64decode(raw)
    handle = tempfile.NamedTemporaryFile(delete=False, suffix=".pem")  # noqa: SIM115 - kept for ssl
    handle.write(raw)
    handle.close()
    return handle.name


def _ssl_context(info: Any) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context()
    if info.ca_path:
        context.load_verify_locations(cafile=os.fsdecode(info.ca_path))
    elif info.ca_data:
        context.load_verify_locations(cafile=_write_temp(info.ca_data))
    cert = info.certificate_path or (_write_temp(info.certificate_data) if info.certificate_data else None)
    key = info.private_key_path or (_write_temp(info.private_key_data) if info.private_key_data else None)
    if cert:
        context.load_cert_chain(os.fsdecode(cert), os.fsdecode(key) if key else None)
    return context


def login(settings: Any = None) -> Any:
    """kopf's `ConnectionInfo`: the in-cluster service account first, then the kubeconfig."""
    import kopf  # the adapter is the only place that imports kopf's client side

    settings = settings if settings is not None else kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise RuntimeError("no Kubernetes credentials: neither a service account nor a kubeconfig")
    return info


def connect() -> KubeConnection:
    """The operator's own connection, with the same credentials kopf uses."""
    info = login()
    return KubeConnection(server=info.server.rstrip("/"), headers=info.as_http_headers(),
                          ssl_context=_ssl_context(info))


class Kube:
    """A small async client for the kinds in `_KINDS`."""

    def __init__(self, connection: KubeConnection) -> None:
        self._conn = connection
        self._session: aiohttp.ClientSession | None = None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=dict(self._conn.headers),
                timeout=aiohttp.ClientTimeout(total=30),
                connector=aiohttp.TCPConnector(ssl=self._conn.ssl_context),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        prefix, plural = _KINDS[kind]
        out = f"{prefix}/namespaces/{namespace}/{plural}"
        if name is not None:
            out += f"/{name}"
        if subresource is not None:
            out += f"/{subresource}"
        return out

    async def _request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
                       content_type: str = "application/json") -> dict[str, Any]:
        http = await self._http()
        async with http.request(method, self._conn.server + path, json=body, params=params,
                                headers={"Content-Type": content_type}) as response:
            data: Any = await response.json(content_type=None) if response.content_length != 0 else {}
            if response.status >= 400:
                data = data if isinstance(data, dict) else {}
                raise ApiError(response.status, str(data.get("reason", response.reason)),
                               str(data.get("message", ""))[:500])
            return cast(dict[str, Any], data or {})

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self._request("GET", self.path(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
        data = await self._request("GET", self.path(kind, namespace), params={"labelSelector": label_selector})
        return list(data.get("items", []))

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create; None when it already exists (409 is not an error: the caller adopts)."""
        meta = obj["metadata"]
        try:
            return await self._request("POST", self.path(obj["kind"], meta["namespace"]), body=obj)
        except ApiError as exc:
            if exc.status == 409:
                return None
            raise

    async def patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any],
                    subresource: str | None = None) -> dict[str, Any]:
        return await self._request("PATCH", self.path(kind, namespace, name, subresource), body=patch,
                                   content_type="application/merge-patch+json")

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete in the background (dependents go through the garbage collector); False if gone."""
        try:
            await self._request("DELETE", self.path(kind, namespace, name),
                                body={"kind": "DeleteOptions", "apiVersion": "v1",
                                      "propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the LoadTest (best effort: an Event must never fail a reconcile)."""
        meta = involved["metadata"]
        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", "kubeload.dev/v1alpha1"),
                "kind": involved.get("kind", "LoadTest"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "type": type_,
            "reason": reason[:128],
            "message": message[:1024],
            "source": {"component": "kubeload-operator"},
            "reportingComponent": "kubeload-operator",
            "reportingInstance": os.environ.get("HOSTNAME", "kubeload-operator")[:128],
            "action": "Reconcile",
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "eventTime": now,
            "count": 1,
        }
        try:
            await self._request("POST", self.path("Event", meta["namespace"]), body=body)
        except (ApiError, aiohttp.ClientError) as exc:
            log.warning("could not post event %s: %s", reason, exc)
