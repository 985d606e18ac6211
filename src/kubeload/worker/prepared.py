"""Requests prepared once from the spec, and the weighted pick of one per iteration.

Everything a request needs that does not change during the run (URL, merged headers, encoded
body, accepted statuses, its stats object) is computed here once, so an iteration does no
string building, no JSON encoding and no dict merging.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence

from ..api.models import LoadTestSpec, RequestSpec
from .recorder import Recorder, RequestStats

__all__ = ["PreparedRequest", "RequestPicker", "prepare_requests"]

# Header dicts with a token are rebuilt only when the token changes; keep a few versions.
_TOKEN_HEADER_VERSIONS = 4


class PreparedRequest:
    """One request of the spec, ready to send."""

    __slots__ = ("_accepted", "_with_token", "body", "headers", "method", "name", "stats", "url")

    def __init__(self, spec: RequestSpec, base_url: str, target_headers: dict[str, str],
                 stats: RequestStats) -> None:
        self.name = spec.name
        self.method = spec.method
        self.url = base_url.rstrip("/") + spec.path
        headers = dict(target_headers)
        headers.update(spec.headers)
        self.body: bytes | None = None
        if spec.json_body is not None:
            self.body = json.dumps(spec.json_body, separators=(",", ":")).encode()
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        elif spec.body is not None:
            self.body = spec.body.encode()
        self.headers = headers
        # None means k6's default: any 2xx or 3xx is a success.
        self._accepted: frozenset[int] | None = frozenset(spec.expect.status) or None
        self.stats = stats
        self._with_token: dict[tuple[str, str], dict[str, str]] = {}

    def accepts(self, status: int) -> bool:
        if self._accepted is None:
            return 200 <= status <= 399
        return status in self._accepted

    def headers_with(self, header: tuple[str, str] | None) -> dict[str, str]:
        """The headers plus the token header; the same dict object until the token changes."""
        if header is None:
            return self.headers
        merged = self._with_token.get(header)
        if merged is None:
            if len(self._with_token) >= _TOKEN_HEADER_VERSIONS:
                self._with_token.clear()
            merged = self._with_token[header] = {**self.headers, header[0]: header[1]}
        return merged


class RequestPicker:
    """Picks a request by weight in O(1): a wheel of indices, each repeated by its weight."""

    __slots__ = ("_single", "_wheel", "requests")

    def __init__(self, requests: Sequence[PreparedRequest], weights: Sequence[int]) -> None:
        if not requests or len(requests) != len(weights):
            raise ValueError("need one weight per request, and at least one request")
        self.requests = list(requests)
        divisor = math.gcd(*weights)
        self._wheel = [r for r, w in zip(self.requests, weights, strict=True) for _ in range(w // divisor)]
        self._single = self.requests[0] if len(self.requests) == 1 else None

    def pick(self) -> PreparedRequest:
        if self._single is not None:
            return self._single
        return random.choice(self._wheel)  # noqa: S311 - load mix, not cryptography


def prepare_requests(spec: LoadTestSpec, recorder: Recorder) -> RequestPicker:
    prepared = [
        PreparedRequest(request, spec.target.base_url, spec.target.headers, recorder.stats_for(request.name))
        for request in spec.requests
    ]
    return RequestPicker(prepared, [request.weight for request in spec.requests])
