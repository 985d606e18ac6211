"""The base of every API model: camelCase on the wire, unknown fields refused, cross-field rules.

A cross-field rule is written once as a `Rule`: its Python check runs in pydantic validation
(the CLI, the operator) and its CEL expression goes into the generated CRD (admission), with
the same message, so both refuse the same manifests for the same stated reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

__all__ = ["ApiModel", "Rule"]


@dataclass(frozen=True)
class Rule:
    """A cross-field check with its CEL twin. `field` names the field the message is about."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field: str | None = None


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=False,
        use_attribute_docstrings=True,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in type(self).rules:
            if not rule.check(self):
                raise PydanticCustomError("rule", rule.message, {"field": rule.field or ""})
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if cls.rules:
            target = handler.resolve_ref_schema(json_schema)
            target["x-kubernetes-validations"] = [
                {"rule": r.cel, "message": r.message} | ({"fieldPath": f".{r.field}"} if r.field else {})
                for r in cls.rules
            ]
        return json_schema

    def wire(self) -> dict[str, Any]:
        """The object as it appears in a manifest: camelCase, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
