"""The README's spec reference, generated from the models so docs cannot drift from the API."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .base import ApiModel
from .models import LoadTestSpec

__all__ = ["spec_reference"]


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    if annotation is typing.Any:
        return "any JSON"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return ""
    if info.default is None:
        return ""
    value = info.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{getattr(value, 'value', value)}`"


def _models(model: type[ApiModel], path: str, seen: dict[type[ApiModel], list[str]]) -> None:
    """Every model reachable from `model`, with all the paths it is used at, in first-seen order."""
    if model in seen:
        seen[model].append(path)
        return
    seen[model] = [path]
    for name, info in model.model_fields.items():
        wire = (info.alias or name) + ("[]" if _is_list(info.annotation) else "")
        for candidate in _nested(info.annotation):
            _models(candidate, f"{path}.{wire}", seen)


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        return _is_list(typing.get_args(annotation)[0])
    return typing.get_origin(annotation) is list


def _nested(annotation: Any) -> list[type[ApiModel]]:
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested(arg)]


def spec_reference() -> str:
    """Markdown tables: one per object of the spec, every field with type, default and meaning."""
    found: dict[type[ApiModel], list[str]] = {}
    _models(LoadTestSpec, "spec", found)
    lines = []
    for model, paths in found.items():
        doc = " ".join((model.__doc__ or "").split())
        where = ", ".join(f"`{p}`" for p in paths)
        lines += [
            f"#### {where} ({model.__name__})",
            "",
            doc,
            "",
            "| field | type | default | description |",
            "| --- | --- | --- | --- |",
        ]
        for name, info in model.model_fields.items():
            description = " ".join((info.description or "").split()).replace("|", "\\|")
            lines.append(
                f"| `{info.alias or name}` | {_type_name(info.annotation)} | {_default(info)} | {description} |"
            )
        lines.append("")
    return "\n".join(lines)
