"""Fixtures for the e2e tests: a real control plane for the whole session.

``control_plane`` builds the binaries when the cache lacks them (the first build
takes tens of minutes: run ``hack/control-plane/build.sh`` before pytest so no
test timeout covers it), starts the control plane in a temporary directory and
always stops it at the end of the session, failures included.

Set ``KUBELOAD_CLUSTER=STATE_DIR`` to use a control plane already started with
``hack/control-plane/up.sh STATE_DIR`` instead (it is then left running).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from controlplane import ControlPlane


@contextlib.contextmanager
def _stop_on_termination(cp: ControlPlane) -> Iterator[None]:
    """SIGTERM/SIGHUP would end pytest without teardown: stop the control plane first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        cp.stop()
        signal.signal(signum, previous.get(signum, signal.SIG_DFL))
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane()
    existing = os.environ.get("KUBELOAD_CLUSTER")
    with _stop_on_termination(cp):
        try:
            if existing:
                cp.attach(existing)
            else:
                cp.start(tmp_path_factory.mktemp("control-plane"))
            yield cp
        finally:
            cp.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
