"""The CRD is generated from the models, in sync, structural and bounded everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubeload.api.crd import crd, crd_yaml, openapi_schema

ROOT = Path(__file__).resolve().parents[2]
# Keys a CRD's openAPIV3Schema may not hold (apiextensions validation) or that are not structural.
FORBIDDEN = {"$ref", "anyOf", "oneOf", "allOf", "not", "patternProperties", "propertyNames", "const",
             "exclusiveMinimum", "exclusiveMaximum", "definitions", "$defs", "title", "readOnly"}


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_generated_file_is_in_sync() -> None:
    committed = (ROOT / "crds" / "loadtest.yaml").read_text()
    assert committed == crd_yaml(), "crds/loadtest.yaml drifted from the models: run `make crd`"


def test_names_and_subresources() -> None:
    spec = crd()["spec"]
    assert spec["group"] == "kubeload.dev"
    assert spec["names"] | {} == {"kind": "LoadTest", "listKind": "LoadTestList", "plural": "loadtests",
                                  "singular": "loadtest", "shortNames": ["lt"], "categories": ["kubeload"]}
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Stage", "VUs", "RPS", "P95", "Errors", "Verdict", "Age"]


def test_schema_is_structural() -> None:
    for path, node in walk(openapi_schema()):
        assert not FORBIDDEN & node.keys(), f"{path}: {FORBIDDEN & node.keys()}"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"


def test_every_string_number_list_and_map_is_bounded() -> None:
    unbounded = []
    for path, node in walk(openapi_schema()):
        if path.startswith((".metadata", ".apiVersion", ".kind")):
            continue  # the API server owns these
        kind = node.get("type")
        if kind == "string" and "maxLength" not in node and "enum" not in node:
            unbounded.append(path)
        if kind in ("integer", "number") and not {"minimum", "maximum"} <= node.keys():
            unbounded.append(path)
        if kind == "array" and "maxItems" not in node:
            unbounded.append(path)
        if kind == "object" and ("additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")) \
                and "properties" not in node and "maxProperties" not in node and path != "":
            unbounded.append(path)
    # A free-form JSON request body is bounded by the manifest size limit only.
    assert unbounded == [], unbounded


def test_cel_rules_come_from_the_models() -> None:
    schema = openapi_schema()
    load = schema["properties"]["spec"]["properties"]["load"]
    messages = {rule["message"] for rule in load["x-kubernetes-validations"]}
    assert {"ramping executors need at least one stage", "startVUs must not exceed maxVUs",
            "constant-arrival-rate needs rate and duration"} <= messages
    stage = load["properties"]["stages"]["items"]
    assert stage["x-kubernetes-validations"][0]["message"] == "a stage's duration must be positive"


def test_status_conditions_are_a_map_list() -> None:
    status = openapi_schema()["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_yaml_round_trips() -> None:
    assert yaml.safe_load(crd_yaml()) == crd()
