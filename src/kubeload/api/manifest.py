"""Read LoadTest manifests and explain what is wrong with them, field by field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .models import LoadTest

__all__ = ["FieldError", "ManifestError", "load_manifest", "load_manifests", "parse_loadtest"]

# A manifest is small; a huge file is a mistake or an attack, refused before parsing.
MAX_MANIFEST_BYTES = 1_048_576


@dataclass(frozen=True)
class FieldError:
    """One problem: where (`spec.load.stages[0].duration`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ManifestError(Exception):
    """A manifest that is not a valid LoadTest; `errors` lists every problem found."""

    def __init__(self, source: str, errors: list[FieldError]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(str(e) for e in errors))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in ("literal", "str", "int", "[key]"):
            continue  # pydantic's internal validator names are not fields
        else:
            out += f".{part}" if out else part
    return out


def _messages(error: ValidationError) -> list[FieldError]:
    found = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        field = (item.get("ctx") or {}).get("field")
        if field:
            loc = (*loc, field)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] == "string_pattern_mismatch" and (item.get("ctx") or {}).get("pattern"):
            message = f"{item['input']!r} does not match {item['ctx']['pattern']}"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        found.append(FieldError(_path(loc), message))
    return found


def parse_loadtest(document: Any, source: str = "<manifest>") -> LoadTest:
    """Validate one parsed YAML/JSON document as a LoadTest."""
    if not isinstance(document, dict):
        raise ManifestError(source, [FieldError("", "a LoadTest manifest must be a mapping")])
    try:
        return LoadTest.model_validate(document)
    except ValidationError as exc:
        raise ManifestError(source, _messages(exc)) from None


def load_manifests(path: Path) -> list[LoadTest]:
    """Every LoadTest document of a YAML file; all errors of all documents are reported."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(source, [FieldError("", f"cannot read the file: {exc.strerror}")]) from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(source, [FieldError("", f"file is larger than {MAX_MANIFEST_BYTES} bytes")])
    try:
        documents = [d for d in yaml.safe_load_all(raw) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(source, [FieldError("", f"not valid YAML: {exc}")]) from None
    if not documents:
        raise ManifestError(source, [FieldError("", "the file holds no document")])
    tests: list[LoadTest] = []
    errors: list[FieldError] = []
    for index, document in enumerate(documents):
        try:
            tests.append(parse_loadtest(document, source))
        except ManifestError as exc:
            prefix = f"document {index + 1}: " if len(documents) > 1 else ""
            errors.extend(FieldError(e.path, prefix + e.message) for e in exc.errors)
    if errors:
        raise ManifestError(source, errors)
    return tests


def load_manifest(path: Path) -> LoadTest:
    """The single LoadTest of a file (the local runner runs one test at a time)."""
    tests = load_manifests(path)
    if len(tests) != 1:
        raise ManifestError(str(path), [FieldError("", f"expected one LoadTest, found {len(tests)}")])
    return tests[0]
