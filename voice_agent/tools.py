"""Tools: plain (async) Python functions with type hints, labelled for the scheduler.

>>> registry = ToolRegistry()
>>> @registry.tool(kind="read", timeout_s=3)
... async def order_status(order_id: str) -> dict:
...     '''Look up the shipping status of an order.'''
...     return {"order_id": order_id, "status": "shipped"}

The JSON schema of the parameters comes from pydantic (a model built from the
signature); arguments are validated with the same model before the call runs.
``kind`` says whether a call changes the world (``write``: never run
speculatively, never twice); ``on_interrupt`` what happens to a running call
when the user barges in.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

ToolKind = Literal["read", "write"]
OnInterrupt = Literal["cancel", "continue", "continue_and_report"]

DEFAULT_TIMEOUT_S = 10.0  # a phone caller should not wait longer for one lookup


class ToolArgumentsError(ValueError):
    """The model's arguments do not match the tool's parameters."""


class UnknownToolError(LookupError):
    """The model called a tool that is not registered."""


@dataclass(frozen=True)
class ToolSpec:
    """One tool: what the model sees (name, description, JSON schema) and how it runs."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Awaitable[Any] | Any]
    kind: ToolKind = "read"
    on_interrupt: OnInterrupt = "cancel"
    timeout_s: float = DEFAULT_TIMEOUT_S
    args_model: type[BaseModel] | None = field(default=None, compare=False)

    def openai_schema(self) -> dict[str, Any]:
        """The tool as the ``tools`` list of a chat-completions request expects it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def parse_arguments(self, raw: str) -> dict[str, Any]:
        """Parse and validate the model's raw JSON arguments; raise :class:`ToolArgumentsError`."""
        try:
            data = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolArgumentsError(
                f"arguments are not valid JSON: {exc.msg} at {exc.pos}"
            ) from None
        if not isinstance(data, dict):
            raise ToolArgumentsError(f"arguments must be a JSON object, got {type(data).__name__}")
        if self.args_model is not None:
            try:
                model = self.args_model.model_validate(data)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                    for e in exc.errors()
                )
                raise ToolArgumentsError(problems) from None
            return {name: getattr(model, name) for name in type(model).model_fields}
        return _check_against_schema(data, self.parameters)

    async def invoke(self, arguments: Mapping[str, Any]) -> Any:
        """Run the tool with validated arguments (a sync function runs in a worker thread)."""
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**arguments)
        result = await asyncio.to_thread(self.fn, **arguments)
        if inspect.isawaitable(result):
            return await result
        return result


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _check_against_schema(data: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """A small JSON-schema check for tools declared with an explicit schema."""
    props: Mapping[str, Any] = schema.get("properties", {})
    missing = [k for k in schema.get("required", []) if k not in data]
    if missing:
        raise ToolArgumentsError(f"missing required argument(s): {', '.join(missing)}")
    if schema.get("additionalProperties") is False:
        extra = [k for k in data if k not in props]
        if extra:
            raise ToolArgumentsError(f"unexpected argument(s): {', '.join(extra)}")
    for key, value in data.items():
        expected = props.get(key, {}).get("type")
        if isinstance(expected, str) and expected in _JSON_TYPES:
            ok = isinstance(value, _JSON_TYPES[expected]) and not (
                expected in ("integer", "number") and isinstance(value, bool)
            )
            if not ok:
                raise ToolArgumentsError(f"{key}: expected {expected}, got {type(value).__name__}")
        enum = props.get(key, {}).get("enum")
        if enum is not None and value not in enum:
            raise ToolArgumentsError(f"{key}: must be one of {enum}, got {value!r}")
    return data


def spec_from_function(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    kind: ToolKind = "read",
    on_interrupt: OnInterrupt = "cancel",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ToolSpec:
    """Build a :class:`ToolSpec` from a typed function: schema and validation from pydantic."""
    sig = inspect.signature(fn)
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {fn.__name__}: *args/**kwargs are not supported")
        annotation = hints.get(pname, Any)
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, default)
    tool_name = name or fn.__name__
    model = create_model(  # type: ignore[call-overload]
        f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    doc = inspect.getdoc(fn) or ""
    return ToolSpec(
        name=tool_name,
        description=description or doc.split("\n\n")[0].strip() or tool_name,
        parameters=schema,
        fn=fn,
        kind=kind,
        on_interrupt=on_interrupt,
        timeout_s=timeout_s,
        args_model=model,
    )


class ToolRegistry:
    """The tools an agent may call, by name."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ToolSpec) -> ToolSpec:
        """Register ``spec``; a second tool with the same name is an error."""
        if spec.name in self._specs:
            raise ValueError(f"a tool named {spec.name!r} is already registered")
        if spec.timeout_s <= 0:
            raise ValueError(f"tool {spec.name!r}: timeout_s must be > 0")
        self._specs[spec.name] = spec
        return spec

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        kind: ToolKind = "read",
        on_interrupt: OnInterrupt = "cancel",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Any:
        """Decorator registering a typed function as a tool (usable with or without arguments)."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            self.add(
                spec_from_function(
                    f,
                    name=name,
                    description=description,
                    kind=kind,
                    on_interrupt=on_interrupt,
                    timeout_s=timeout_s,
                )
            )
            return f

        return register(fn) if fn is not None else register

    def get(self, name: str) -> ToolSpec:
        """The tool called ``name``; raises :class:`UnknownToolError`."""
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(sorted(self._specs)) or "none"
            raise UnknownToolError(f"no tool named {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def openai_tools(self) -> list[dict[str, Any]]:
        """The ``tools`` parameter of a chat-completions request."""
        return [spec.openai_schema() for spec in self._specs.values()]

    def merge(self, other: ToolRegistry) -> None:
        """Add every tool of ``other``."""
        for spec in other:
            self.add(spec)
