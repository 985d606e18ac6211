"""Generate the LoadTest CustomResourceDefinition from the pydantic models.

pydantic emits JSON Schema; Kubernetes wants a structural OpenAPI v3 subset: every node typed,
no `$ref`, no `anyOf` for optional fields, `x-kubernetes-*` extensions kept. This module does
only that translation; what the schema says comes from the models.
"""

from __future__ import annotations

from typing import Any

import yaml

from .models import GROUP, KIND, VERSION, LoadTest

__all__ = ["crd", "crd_yaml", "openapi_schema"]

PLURAL = "loadtests"
_DROP = {"title", "additionalProperties", "$defs"}

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Stage", "type": "string", "jsonPath": ".status.stage.progress"},
    {"name": "VUs", "type": "integer", "jsonPath": ".status.vus"},
    {"name": "RPS", "type": "number", "jsonPath": ".status.rps"},
    {"name": "P95", "type": "string", "jsonPath": ".status.latency.p95", "description": "ms"},
    {"name": "Errors", "type": "string", "jsonPath": ".status.errors"},
    {"name": "Verdict", "type": "string", "jsonPath": ".status.verdict"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = dict(defs[node["$ref"].rsplit("/", 1)[-1]])
        # Sibling keys (description, extensions) of a $ref win over the definition's.
        target.update({k: v for k, v in node.items() if k != "$ref"})
        return _resolve(target, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"only Optional[X] unions can be expressed structurally: {node}")
        merged = {k: v for k, v in node.items() if k != "anyOf"} | dict(branches[0])
        return _resolve(merged, defs)
    return {key: _resolve(value, defs) for key, value in node.items()}


def _key_rules(node: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """Map key constraints (patternProperties, propertyNames) as CEL: CRDs support neither."""
    values: dict[str, Any] | None = None
    rules: list[dict[str, str]] = []
    for pattern, value_schema in node.get("patternProperties", {}).items():
        values = value_schema
        rules.append({"rule": f"self.all(k, k.matches({_cel_string(pattern)}))",
                      "message": f"keys must match {pattern}"})
    names = node.get("propertyNames", {})
    if "enum" in names:
        allowed = ", ".join(_cel_string(v) for v in names["enum"])
        rules.append({"rule": f"self.all(k, k in [{allowed}])",
                      "message": f"keys must be one of {', '.join(names['enum'])}"})
    if "maxLength" in names:
        rules.append({"rule": f"self.all(k, k.size() <= {names['maxLength']})",
                      "message": f"keys must be at most {names['maxLength']} characters"})
    if "enum" in names and values is None:
        values = node.get("additionalProperties") if isinstance(node.get("additionalProperties"), dict) else None
    return values, rules


def _cel_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    values, key_rules = _key_rules(node)
    if values is not None:
        node = {k: v for k, v in node.items() if k not in ("patternProperties", "propertyNames")}
        node["additionalProperties"] = values
    elif key_rules:
        node = {k: v for k, v in node.items() if k != "propertyNames"}
    if key_rules:
        out["x-kubernetes-validations"] = key_rules + list(node.get("x-kubernetes-validations", []))
    for key, value in node.items():
        if key in _DROP or (key == "required" and not value) or key in out:
            continue
        if key == "default" and (value is None or isinstance(value, (dict, list))):
            continue  # scalar defaults only: the API server applies them, so CEL rules see them
        if key in ("exclusiveMinimum", "exclusiveMaximum"):
            raise ValueError("use ge/le bounds: OpenAPI v3.0 has no numeric exclusive bounds")
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "properties":
            out[key] = {name: _structural(prop) for name, prop in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = _structural(value)
        else:
            out[key] = value
    if node.get("additionalProperties") not in (None, False, True):
        out["additionalProperties"] = _structural(node["additionalProperties"])
    elif node.get("additionalProperties") is True or (
        node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "maxLength" in out and out.get("type") == "string" and "enum" in out:
        del out["maxLength"]
    return out


def openapi_schema() -> dict[str, Any]:
    """The structural openAPIV3Schema of the LoadTest kind."""
    raw = LoadTest.model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve({k: v for k, v in raw.items() if k != "$defs"}, raw.get("$defs", {}))
    schema = _structural(resolved)
    # apiVersion, kind and metadata are the API server's business; keep it to what it allows.
    schema["properties"]["metadata"] = {"type": "object"}
    schema["properties"]["apiVersion"] = {"type": "string"}
    schema["properties"]["kind"] = {"type": "string"}
    schema["required"] = ["spec"]
    schema["x-kubernetes-validations"] = [
        {
            "rule": "self.metadata.name.size() <= 40",
            "message": "metadata.name must be at most 40 characters (children's names derive from it)",
        }
    ]
    return schema


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "kubeload", "app.kubernetes.io/part-of": "kubeload"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["lt"],
                "categories": ["kubeload"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `kubeload crd` from src/kubeload/api/models.py. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)
