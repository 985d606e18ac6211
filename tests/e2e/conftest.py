"""Fixtures for the e2e tests: a real control plane for the whole session.

``control_plane`` builds the binaries when the cache lacks them (the first build
takes tens of minutes: run ``hack/control-plane/build.sh`` before pytest so no
test timeout covers it), starts the control plane in a temporary directory and
always stops it at the end of the session, failures included.

Set ``KUBELOAD_CLUSTER=STATE_DIR`` to use a control plane already started with
``hack/control-plane/up.sh STATE_DIR`` instead (it is then left running).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from controlplane import ControlPlane  # noqa: E402


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane()
    existing = os.environ.get("KUBELOAD_CLUSTER")
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
