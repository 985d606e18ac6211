"""LoadTest manifests for tests that drive `kubeload run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def manifest(tmp_path: Path, name: str, base_url: str, load: dict[str, Any], **spec: Any) -> Path:
    """A one-request LoadTest file (`GET /home`) with the given load and extra spec fields."""
    doc = {"apiVersion": "kubeload.dev/v1alpha1", "kind": "LoadTest", "metadata": {"name": name},
           "spec": {"target": {"baseURL": base_url}, "requests": [{"name": "home", "path": "/home"}],
                    "load": load, **spec}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
