"""The generated CRD on a real kube-apiserver: examples accepted, invalid ones refused by CEL
and schema with the same field and message `kubeload validate` gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from controlplane import ControlPlane

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID = sorted((ROOT / "examples" / "invalid").glob("*.yaml"))


@pytest.fixture(scope="module")
def crd_installed(control_plane: ControlPlane) -> ControlPlane:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / "loadtest.yaml"))
    control_plane.kubectl("wait", "--for=condition=Established", "crd/loadtests.kubeload.dev", "--timeout=60s")
    return control_plane


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_accepted(crd_installed: ControlPlane, namespace: str, path: Path) -> None:
    result = crd_installed.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_examples_are_refused_with_the_models_message(
    crd_installed: ControlPlane, namespace: str, path: Path
) -> None:
    text = path.read_text()
    field = re.search(r"^# expect-field: (.+)$", text, re.M)[1].strip()  # type: ignore[index]
    message = re.search(r"^# expect-message: (.+)$", text, re.M)[1].strip()  # type: ignore[index]
    result = crd_installed.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode != 0
    assert f"{field}: Invalid value: {message}" in result.stderr, result.stderr


def test_schema_refuses_unknown_fields_and_hostile_values(crd_installed: ControlPlane, namespace: str) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "arrival-rate.yaml").read_text())
    doc["spec"]["target"]["headers"] = {"X-Bad": "a\nInjected: 1"}
    doc["spec"]["load"]["rate"] = 10**12
    result = crd_installed.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                                   input=yaml.safe_dump(doc), check=False)
    assert result.returncode != 0
    assert "spec.target.headers.X-Bad" in result.stderr
    assert "spec.load.rate" in result.stderr
    doc = yaml.safe_load((ROOT / "examples" / "arrival-rate.yaml").read_text())
    doc["spec"]["colour"] = "blue"
    result = crd_installed.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
                                   input=yaml.safe_dump(doc), check=False)
    assert result.returncode != 0 and 'unknown field "spec.colour"' in result.stderr


def test_printer_columns_and_short_name(crd_installed: ControlPlane, namespace: str) -> None:
    crd_installed.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / "arrival-rate.yaml"))
    header = crd_installed.kubectl("get", "lt", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "STAGE", "VUS", "RPS", "P95", "ERRORS", "VERDICT", "AGE"]
    assert "loadtests.kubeload.dev" in crd_installed.kubectl("get", "crd", "-l", "app.kubernetes.io/name=kubeload",
                                                             "-o", "name").stdout
    categories = crd_installed.kubectl("get", "kubeload", "-n", namespace, "-o", "name").stdout
    assert "loadtest.kubeload.dev/steady-rate" in categories
