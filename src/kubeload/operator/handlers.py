"""Thin kopf handlers: a timer per LoadTest calls the reconciler; that is all.

Level-based: every `reconcile_interval` seconds the whole state is observed again and the
planner decides, so a missed or repeated event changes nothing. kopf's own bookkeeping goes
to annotations (`kubeload.dev/*`), never to `.status`, which only the planner writes; kopf's
posting of log lines as Events is off, the reconciler posts one Event per transition.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ..api.crd import PLURAL
from ..api.models import GROUP, VERSION
from ..observability import OperatorMetrics
from .kube import Kube, connect, login
from .reconcile import Reconciler
from .settings import OperatorSettings

__all__ = ["build_registry"]

log = logging.getLogger("kubeload.operator")


def build_registry(settings: OperatorSettings, service_map: str | None = None,
                   metrics: OperatorMetrics | None = None, verbose: bool = False,
                   namespaced: bool = False) -> kopf.OperatorRegistry:
    """A kopf registry with the operator's handlers, bound to these settings."""
    registry = kopf.OperatorRegistry()
    state: dict[str, Reconciler] = {}

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubeload.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kubeload.dev")
        settings.posting.enabled = False
        settings.watching.server_timeout = 300
        # kopf puts a finalizer on objects with timers and removes it once the timer stopped;
        # it checks that every `cancellation_polling` seconds (60 by default), which would
        # hold a deleted LoadTest for a minute.
        settings.background.cancellation_polling = 0.5
        if namespaced:
            # With fixed namespaces there is nothing to scan; scanning would need cluster-wide
            # list rights on namespaces and CRDs, which a namespaced install does not grant.
            settings.scanning.disabled = True
        if not verbose:
            # One line per timer run is noise; warnings and errors of handlers still show.
            logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        state["reconciler"] = Reconciler(Kube(connect()), operator_settings, service_map)

    operator_settings = settings

    @kopf.on.login(registry=registry)
    def credentials(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        info: kopf.ConnectionInfo = login(settings)
        return info

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        reconciler = state.pop("reconciler", None)
        if reconciler is not None:
            await reconciler.close()
            await reconciler.kube.close()

    @kopf.timer(GROUP, VERSION, PLURAL, interval=settings.reconcile_interval, sharp=False,
                errors=kopf.ErrorsMode.IGNORED, registry=registry)
    async def reconcile(body: kopf.Body, **_: Any) -> None:
        reconciler = state["reconciler"]
        meta = body["metadata"]
        if metrics is None:
            decision = await reconciler.reconcile(body)
        else:
            with metrics.reconcile(meta["namespace"], meta["name"]):
                decision = await reconciler.reconcile(body)
        if metrics is not None and decision is not None and decision.status.get("phase"):
            metrics.set_phase(meta["namespace"], meta["name"], str(decision.status["phase"]))

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def deleted(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        # No finalizer (nothing outside the cluster to clean up but the load itself): the
        # DELETED watch event is the moment to stop the workers through Redis.
        if event.get("type") != "DELETED" or "reconciler" not in state:
            return
        meta = body["metadata"]
        log.info("LoadTest %s/%s deleted: stopping its workers", meta.get("namespace"), meta.get("name"))
        await state["reconciler"].deleted(body)
        if metrics is not None:
            metrics.forget(meta["namespace"], meta["name"])

    return registry
