"""One reconcile of one LoadTest: observe (API, then Redis), plan (pure), act.

Observation order matters: the Job and pods are read before the metrics stream, so when the
Job reports complete, every delta its workers wrote before exiting is already in what we
merge. Acting follows the planner's order: children, plan, Job, stop, summary, cleanup,
status, Events. Any step may fail; the next reconcile observes again and redoes what is
missing (every step is idempotent: create-or-adopt, SET NX, merge patches).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from ..api.models import LoadTestSpec
from ..api.status import Phase
from ..protocol import RunKeys
from .builders import (
    LOADTEST_LABEL,
    SUMMARY_CHECKPOINT_KEY,
    SUMMARY_KEY,
    SUMMARY_RESULT_KEY,
    Owner,
    child_names,
    redis_url,
)
from .fleet import FleetMetrics, view
from .kube import ApiError, Kube
from .model import Decision, Observed, StopRecord
from .observe import deployment_state, job_state, pinned_spec, pod_issues, redis_password, secret_value
from .plan import effective_spec, plan
from .redisio import RunRedis, load_service_map, map_url
from .settings import OperatorSettings
from .status import iso, parse_iso

__all__ = ["Reconciler"]

log = logging.getLogger("kubeload.operator")

CHECKPOINT_EVERY = 10.0  # seconds between two checkpoint writes while running


@dataclass
class _Run:
    """What the operator keeps in memory per run (all of it can be rebuilt from the world)."""

    redis: RunRedis | None = None
    redis_key: tuple[str, str | None] = ("", None)
    fleet: FleetMetrics = field(default_factory=FleetMetrics)
    replayed: bool = False  # the metrics stream was read from its start in this process
    created: set[tuple[str, str]] = field(default_factory=set)  # children known to exist
    checkpoint_at: float = 0.0


class Reconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings, service_map: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.kube = kube
        self.settings = settings
        self.service_map = service_map
        self.clock = clock
        self._runs: dict[str, _Run] = {}

    # ---------------------------------------------------------------------------- entry points

    async def reconcile(self, body: Mapping[str, Any]) -> Decision | None:
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            return None  # going away (maybe with its namespace): create nothing; `deleted` stops the load
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        owner = Owner(name, namespace, uid)
        previous = dict(body.get("status") or {})
        try:
            spec = LoadTestSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            await self._invalid(body, previous, exc)
            return None
        run = self._runs.setdefault(uid, _Run())
        now = self.clock()
        observed, redis = await self._observe(body, owner, spec, run, previous=previous, now=now)
        decision = plan(spec, observed, now, self.settings)
        await self._act(body, owner, run, redis=redis, observed=observed, decision=decision, now=now)
        if decision.final is not None or observed.result is not None:
            await self._drop(uid)
        return decision

    async def deleted(self, body: Mapping[str, Any]) -> None:
        """The LoadTest is going away: stop the load now (the garbage collector removes the
        children; with an external Redis nothing else would stop the workers)."""
        uid = body["metadata"]["uid"]
        run = self._runs.get(uid)
        try:
            if run is not None and run.redis is not None:
                await run.redis.stop(StopRecord(Phase.ABORTED.value, "Deleted", "the LoadTest was deleted",
                                                self.clock()))
        except Exception as exc:  # best effort: Redis may already be gone with its Deployment
            log.info("could not set the stop key of a deleted LoadTest: %s", exc)
        await self._drop(uid)

    async def close(self) -> None:
        for uid in list(self._runs):
            await self._drop(uid)

    # ---------------------------------------------------------------------------- observe

    async def _observe(self, body: Mapping[str, Any], owner: Owner, spec: LoadTestSpec, run: _Run, *,
                       previous: dict[str, Any], now: float) -> tuple[Observed, RunRedis | None]:
        meta = body["metadata"]
        ns, names = owner.namespace, child_names(owner.name)
        secret = await self.kube.get("Secret", ns, names["run"])
        pinned = pinned_spec(secret)
        effective, _ = effective_spec(spec, pinned)
        internal = not effective.redis.url
        summary = await self.kube.get("ConfigMap", ns, names["summary"])
        data = (summary or {}).get("data") or {}
        result = json.loads(data[SUMMARY_RESULT_KEY]) if data.get(SUMMARY_RESULT_KEY) else None
        redis_dep = await self.kube.get("Deployment", ns, names["redis"]) if internal else None
        refresher = await self.kube.get("Deployment", ns, names["refresher"]) if effective.auth else None
        job = await self.kube.get("Job", ns, names["workers"])
        existing = {("Secret", names["run"])} if secret else set()
        for kind, obj in (("ConfigMap", summary), ("Job", job)):
            if obj is not None:
                existing.add((kind, obj["metadata"]["name"]))
        for obj in (redis_dep, refresher):
            if obj is not None:
                existing.add(("Deployment", obj["metadata"]["name"]))
        if result is not None:
            # Terminal: only cleanup is left, which wants to know what still exists.
            for kind in ("Service", "NetworkPolicy"):
                if await self.kube.get(kind, ns, names["redis"]) is not None:
                    existing.add((kind, names["redis"]))
        run.created |= existing

        observed = Observed(
            owner=owner,
            generation=int(meta.get("generation", 0)),
            created_at=parse_iso(meta["creationTimestamp"]) if meta.get("creationTimestamp") else now,
            annotations=dict(meta.get("annotations") or {}),
            pinned_wire=pinned,
            fresh_password=secrets.token_urlsafe(24),
            redis_deployment=deployment_state(redis_dep),
            refresher=deployment_state(refresher),
            job=job_state(job),
            existing=frozenset(existing),
            result=result,
            previous_status=previous,
        )
        if result is not None:
            return observed, None
        pods = await self.kube.list("Pod", ns, {LOADTEST_LABEL: owner.name})
        observed = replace(observed, pod_issues=pod_issues(pods))

        redis = await self._redis(owner, effective, secret, run)
        if redis is None:
            return observed, None
        state = await redis.observe()
        if state.reachable and state.plan is not None:
            await self._read_metrics(body, redis, run, data)
        return replace(observed, redis=state, metrics=view(run.fleet)), redis

    async def _redis(self, owner: Owner, spec: LoadTestSpec, secret: Mapping[str, Any] | None,
                     run: _Run) -> RunRedis | None:
        if spec.redis.url:
            ref = spec.redis.password_secret_ref
            password = secret_value(await self.kube.get("Secret", owner.namespace, ref.name), ref.key) if ref else None
        else:
            password = redis_password(secret)
            if password is None:
                return None  # the run Secret is created in this reconcile; Redis comes later
        url = map_url(redis_url(owner, spec), load_service_map(self.service_map))
        if run.redis is None or run.redis_key != (url, password):
            if run.redis is not None:
                await run.redis.close()
            run.redis = RunRedis(url, password, RunKeys(owner.namespace, owner.name, owner.run_id))
            run.redis_key = (url, password)
        return run.redis

    async def _read_metrics(self, body: Mapping[str, Any], redis: RunRedis, run: _Run,
                            summary_data: Mapping[str, str]) -> None:
        try:
            last, merged = await redis.read_metrics(run.fleet.totals, run.fleet.last_id)
        except Exception as exc:
            log.warning("reading the metrics stream failed: %s", exc)
            return
        run.fleet.last_id = last
        run.fleet.entries += merged
        if not run.replayed:
            run.replayed = True
            checkpoint = json.loads(summary_data.get(SUMMARY_CHECKPOINT_KEY) or "{}")
            if int(checkpoint.get("entries", 0)) > run.fleet.entries:
                await self.kube.event(body, "Warning", "MetricsTrimmed",
                                      f"the metrics stream holds {run.fleet.entries} deltas, fewer than the "
                                      f"{checkpoint['entries']} already merged before a restart")

    # ---------------------------------------------------------------------------- act

    async def _ensure(self, obj: Mapping[str, Any], run: _Run, owner: Owner) -> None:
        key = (str(obj["kind"]), str(obj["metadata"]["name"]))
        if key in run.created:
            return
        created = await self.kube.create(obj)
        if created is None:  # 409: it exists; adopt it if it is ours
            existing = await self.kube.get(key[0], owner.namespace, key[1])
            owners = [ref.get("uid") for ref in ((existing or {}).get("metadata", {}).get("ownerReferences") or [])]
            if existing is not None and owner.uid not in owners:
                log.warning("%s %s/%s exists and is not owned by this LoadTest: left alone", key[0],
                            owner.namespace, key[1])
        else:
            log.info("created %s %s/%s", key[0], owner.namespace, key[1])
        run.created.add(key)

    async def _act(self, body: Mapping[str, Any], owner: Owner, run: _Run, *, redis: RunRedis | None,
                   observed: Observed, decision: Decision, now: float) -> None:
        ns, names = owner.namespace, child_names(owner.name)
        for obj in decision.ensure:
            await self._ensure(obj, run, owner)
        plan_present = observed.redis is not None and observed.redis.plan is not None
        if decision.write_plan is not None and redis is not None:
            await redis.write_plan(decision.write_plan)
            plan_present = True
            log.info("plan written for %s/%s: start at %s, %d workers", ns, owner.name,
                     iso(decision.write_plan.start_at), decision.write_plan.workers)
        if decision.job is not None and plan_present:
            await self._ensure(decision.job, run, owner)
        if decision.parallelism is not None:
            await self.kube.patch("Job", ns, names["workers"], {"spec": {"parallelism": decision.parallelism}})
            log.info("workers of %s/%s: parallelism %d", ns, owner.name, decision.parallelism)
        if decision.stop is not None and redis is not None:
            await redis.stop(decision.stop)
            log.info("stopping %s/%s: %s", ns, owner.name, decision.stop.message)
        if decision.final is not None:
            if redis is not None and plan_present:
                status = decision.final.result["status"]
                await redis.stop(StopRecord(status["phase"], "Ended", status.get("message", ""), now))
            await self.kube.patch("ConfigMap", ns, names["summary"], {"data": {
                SUMMARY_KEY: json.dumps(decision.final.summary, sort_keys=True),
                SUMMARY_RESULT_KEY: json.dumps(decision.final.result, sort_keys=True),
                SUMMARY_CHECKPOINT_KEY: json.dumps(run.fleet.checkpoint()),
            }})
        elif plan_present and now - run.checkpoint_at >= CHECKPOINT_EVERY and run.fleet.entries:
            run.checkpoint_at = now
            await self.kube.patch("ConfigMap", ns, names["summary"],
                                  {"data": {SUMMARY_CHECKPOINT_KEY: json.dumps(run.fleet.checkpoint())}})
        for ref in decision.delete:
            if await self.kube.delete(ref.kind, ns, ref.name):
                log.info("cleanup: deleted %s %s/%s", ref.kind, ns, ref.name)
        await self._write_status(body, observed.previous_status, decision.status)
        for event in decision.events:
            await self.kube.event(body, event.type, event.reason, event.message)
        if decision.delete_loadtest:
            log.info("ttlSecondsAfterFinished reached: deleting LoadTest %s/%s", ns, owner.name)
            await self.kube.delete("LoadTest", ns, owner.name)

    async def _write_status(self, body: Mapping[str, Any], previous: Mapping[str, Any],
                            status: Mapping[str, Any]) -> None:
        if not status or dict(previous) == dict(status):
            return
        # A merge patch: keys that disappeared are removed with null.
        patch: dict[str, Any] = {key: None for key in previous if key not in status}
        patch.update(status)
        meta = body["metadata"]
        try:
            await self.kube.patch("LoadTest", meta["namespace"], meta["name"], {"status": patch}, subresource="status")
        except ApiError as exc:
            if exc.status != 404:  # a LoadTest deleted meanwhile has no status to write
                raise

    async def _invalid(self, body: Mapping[str, Any], previous: Mapping[str, Any], exc: ValidationError) -> None:
        errors = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        meta = body["metadata"]
        now = self.clock()
        status = {
            "phase": Phase.FAILED.value,
            "verdict": "failed",
            "message": f"invalid spec: {errors}"[:4000],
            "observedGeneration": int(meta.get("generation", 0)),
            "conditions": [{"type": "Succeeded", "status": "False", "reason": "InvalidSpec",
                            "message": errors[:4000], "lastTransitionTime": iso(now),
                            "observedGeneration": int(meta.get("generation", 0))}],
        }
        if previous.get("phase") != status["phase"] or previous.get("message") != status["message"]:
            await self._write_status(body, previous, status)
            await self.kube.event(body, "Warning", "InvalidSpec", errors[:1000])

    async def _drop(self, uid: str) -> None:
        run = self._runs.pop(uid, None)
        if run is not None and run.redis is not None:
            try:
                await run.redis.close()
            except Exception as exc:
                log.debug("closing a Redis client: %s", exc)
