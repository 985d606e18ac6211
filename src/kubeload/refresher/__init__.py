"""The token refresher: one shared token for every VU.

One process (the lease holder) obtains tokens with the spec's `auth` settings, writes them to
Redis and publishes each new version; a standby replica takes over through a Redis lease.
Modules, each with one job:

- `schedule`: pure timing (when to refresh, backoff with jitter)
- `paths`: dotted paths into JSON responses
- `redact`: the last line of defence that keeps secrets out of every message
- `errors`: the exception hierarchy (messages name the field and the HTTP status, never a secret)
- `grants`: the HTTP request of each grant and the parsing of its response (httpx)
- `store`: the Redis side (lease, publish, stats, forced-refresh stream)
- `service`: the lease holder / standby loops
- `probe`: `/healthz`, `/readyz` (and a hook for `/metrics`)
- `main`: `kubeload refresher`
"""

from __future__ import annotations

from .errors import FirstTokenError, RefresherError, SettingsError, TokenEndpointError

__all__ = ["FirstTokenError", "RefresherError", "SettingsError", "TokenEndpointError"]
