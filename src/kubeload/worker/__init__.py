"""VU workers: the load engine.

Modules, one job each: `engine` (the HTTP engine interface; `engine_pyreqwest`, the default,
and `engine_aiohttp`), `prepared` (requests prepared once from the spec), `iteration` (one
iteration: send, shared token, record), `closed` and `arrival` (the closed and open models),
`recorder` (per-process metrics deltas), `sink` (deltas to Redis, with a backlog), `control`
(plan and stop), `clock` (the plan's time), `process` (one event loop's life), `supervisor`
(processes and heartbeat), `cpus` (processes per CPU limit), `memory` (malloc arenas), `token`
(the shared token's in-memory cache), `main` (the `kubeload worker` command). The stage math
is `kubeload.schedule`; the reader of the metrics is `kubeload.metrics`.
"""

__all__: list[str] = []
