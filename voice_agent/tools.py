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
when the user barges in (a write that has started is never stopped half-way).

A tool may take one parameter annotated :class:`ToolContext` (any name). It is
not part of the schema the model sees; the engine fills it with the call's id
and, for a write, the *intent's idempotency key*, which stays the same when
the engine retries that intent. A write declared ``idempotent=True`` promises
to hand the key to its backend, so running one intent twice applies it once:
the engine may then retry it when an earlier attempt's effect is unknown
(see :mod:`voice_agent.writes`):

>>> @registry.tool(kind="write", idempotent=True, timeout_s=5)
... async def refund(order_id: str, amount: float, ctx: ToolContext) -> dict:
...     '''Refund part of an order.'''
...     return await payments.refund(order_id, amount, idempotency_key=ctx.idempotency_key)
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .call_control import CallControl

ToolKind = Literal["read", "write"]
OnInterrupt = Literal["cancel", "continue", "continue_and_report"]

DEFAULT_TIMEOUT_S = 10.0  # a phone caller should not wait longer for one lookup

#: What OpenAI-compatible servers accept as a function's name.
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

# A write past its timeout keeps running (stopping it half-way could leave the world
# half-changed); the engine waits this much longer for its outcome before recording
# it as abandoned. Seconds: a backend that has not answered a minute late is down.
DEFAULT_ABANDON_AFTER_S = 60.0


class ToolArgumentsError(ValueError):
    """The model's arguments do not match the tool's parameters."""


class UnknownToolError(LookupError):
    """The model called a tool that is not registered."""


@dataclass(frozen=True)
class ToolContext:
    """What the engine tells a tool about the call it runs (a parameter annotated with it).

    ``idempotency_key`` identifies the *intent*: one change to the world the
    caller asked for (a write tool with canonical arguments). Every attempt of
    an intent carries the same key; a new intent gets a new one. It is
    ``None`` for a read. ``attempt`` counts the attempts of the intent (1 first).
    ``call`` reaches the phone call (transfer, hang-up, DTMF; see
    :mod:`voice_agent.call_control`); ``None`` where nothing can act on a call.
    """

    call_id: str
    tool: str
    session_id: str = ""
    idempotency_key: str | None = None
    attempt: int = 1
    call: CallControl | None = None


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
    context_param: str | None = None  # the parameter that receives a ToolContext, if any
    abandon_after_s: float = DEFAULT_ABANDON_AFTER_S  # a write's extra wait past its timeout
    # The tool passes ToolContext.idempotency_key to its backend: one intent run twice
    # is applied once, so the engine may retry an intent whose first attempt is unknown.
    idempotent: bool = False
    # Issue 8's confirmed writes: the engine never runs the call the model makes; it reads
    # ``confirm`` back to the caller (a str.format template over the arguments, a function
    # of the arguments, or the tool's description when True) and runs it only after an
    # explicit yes (or keypad 1).
    confirm: bool | str | Callable[[dict[str, Any]], str] = False

    @property
    def needs_confirmation(self) -> bool:
        """The caller must say yes before this (write) tool runs."""
        return self.kind == "write" and bool(self.confirm)

    def read_back(self, arguments: Mapping[str, Any]) -> str:
        """What the agent will do, in words, for the caller to confirm ("cancel order 4471")."""
        if isinstance(self.confirm, str):
            try:
                return self.confirm.format(**arguments)
            except (KeyError, IndexError, ValueError):
                pass
        elif callable(self.confirm):
            try:
                return self.confirm(dict(arguments))
            except Exception:  # a read-back must never stop the call; fall back to plain words
                pass
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in arguments.items() if v != "")
        what = self.description.rstrip(".").lower()
        return f"{what}: {shown}" if shown else what

    @property
    def is_async(self) -> bool:
        """The tool is a coroutine function (it runs on the event loop unless isolated)."""
        return inspect.iscoroutinefunction(self.fn)

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
        except ValueError:  # (hostile9) a number longer than Python reads (4,300 digits)
            raise ToolArgumentsError(
                "arguments hold a number too long to read (thousands of digits); "
                "send numbers of a sensible length, or as text"
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

    def canonical_arguments(self, arguments: Mapping[str, Any]) -> str:
        """Validated arguments as canonical JSON text: equal for calls that mean the same.

        Values take the schema's types (``5`` and ``5.0`` for a number are both
        ``5.0``; ``4417`` and ``"4417"`` for a string are both ``"4417"``),
        a string marked :data:`SPOKEN_NUMBER` counts by its digits (``"4,417"``,
        ``"four four one seven"`` and ``"4417"`` are one order number),
        defaults are filled in, keys sorted. The scheduler deduplicates on it.
        """
        if self.args_model is not None:
            data = self.args_model.model_validate(dict(arguments)).model_dump(mode="json")
        else:
            data = _canonical_by_schema(dict(arguments), self.parameters)
        data = _spoken_numbers_as_digits(data, self.parameters)
        return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def bind(self, arguments: Mapping[str, Any], context: ToolContext) -> dict[str, Any]:
        """The keyword arguments of one invocation: the validated arguments plus the context."""
        kwargs = dict(arguments)
        if self.context_param is not None:
            kwargs[self.context_param] = context
        return kwargs


SPOKEN_NUMBER: dict[str, Any] = {"x-spoken-number": True}
"""Schema marker (``json_schema_extra``) for a string that is a number as the caller said it
(an order or account number, "exactly as the caller gave it"): the write book compares it
by its digits, so the same write asked with "4,417" and with "four four one seven" is one
intent and runs once. The tool still receives the caller's words."""


def _spoken_numbers_as_digits(data: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    props = schema.get("properties") or {}
    out = dict(data)
    for name, value in data.items():
        prop = props.get(name)
        if isinstance(value, str) and isinstance(prop, Mapping) and prop.get("x-spoken-number"):
            from .phone.numbers import spoken_digits  # (pure text rules; no phone state)

            out[name] = spoken_digits(value) or value.strip()
    return out


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _canonical_by_schema(data: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Values cast to their declared JSON type, defaults filled (explicit-schema tools)."""
    props: Mapping[str, Any] = schema.get("properties", {})
    out: dict[str, Any] = {}
    for key, value in data.items():
        expected = props.get(key, {}).get("type")
        if expected == "number" and _is_number(value):
            value = float(value)
        elif expected == "integer" and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[key] = value
    for key, prop in props.items():
        if key not in out and isinstance(prop, Mapping) and "default" in prop:
            out[key] = prop["default"]
    return out


def _check_against_schema(data: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """A small JSON-schema check for tools declared with an explicit schema.

    A number given for a ``string`` parameter is taken as its text (models
    often send an id such as ``4417`` as a number).
    """
    props: Mapping[str, Any] = schema.get("properties", {})
    data = {
        key: json.dumps(value)
        if props.get(key, {}).get("type") == "string" and _is_number(value)
        else value
        for key, value in data.items()
    }
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
    abandon_after_s: float = DEFAULT_ABANDON_AFTER_S,
    idempotent: bool = False,
    confirm: bool | str | Callable[[dict[str, Any]], str] = False,
) -> ToolSpec:
    """Build a :class:`ToolSpec` from a typed function: schema and validation from pydantic.

    A parameter annotated :class:`ToolContext` is filled by the engine and left
    out of the schema. A number the model sends for a string parameter is
    taken as its text (``4417`` → ``"4417"``).
    """
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(
            f"tool {fn.__name__}: a generator cannot be a tool (it yields; a tool returns one "
            "result): return a list instead"
        )
    sig = inspect.signature(fn)
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    context_param: str | None = None
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {fn.__name__}: *args/**kwargs are not supported")
        annotation = hints.get(pname, Any)
        if annotation is ToolContext:
            if context_param is not None:
                raise TypeError(f"tool {fn.__name__}: more than one ToolContext parameter")
            context_param = pname
            continue
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, default)
    tool_name = name or fn.__name__
    model = create_model(  # type: ignore[call-overload]
        f"{tool_name}_arguments",
        __config__=ConfigDict(extra="forbid", coerce_numbers_to_str=True),
        **fields,
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
        context_param=context_param,
        abandon_after_s=abandon_after_s,
        idempotent=idempotent,
        confirm=confirm,
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
        if not TOOL_NAME.fullmatch(spec.name):
            # (hostile9) accepted before: an OpenAI-compatible server refuses every request
            # that lists it (400), so each turn of the call was an apology
            raise ValueError(
                f"tool {spec.name!r}: a tool's name is 1-64 letters, digits, '_' or '-' "
                "(what OpenAI-compatible servers accept); rename it"
            )
        try:
            json.dumps(spec.openai_schema(), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            # (hostile9) a lone surrogate (bytes decoded with surrogateescape, a "\udce9"
            # escape) in a description: every request of every turn failed to encode
            around = exc.object[max(0, exc.start - 20) : exc.start].encode("utf-8", "replace")
            raise ValueError(
                f"tool {spec.name!r}: its description or parameters hold text that is not "
                f"valid Unicode (U+{ord(exc.object[exc.start]):04X}, a lone surrogate, after "
                f"{around.decode()!r}); fix the text where the tool is declared"
            ) from None
        if not spec.timeout_s > 0:
            raise ValueError(f"tool {spec.name!r}: timeout_s must be > 0")
        if not spec.abandon_after_s >= 0:
            raise ValueError(f"tool {spec.name!r}: abandon_after_s must be >= 0")
        if spec.confirm and spec.kind != "write":
            raise ValueError(
                f"tool {spec.name!r}: confirm is for write tools (a read changes nothing)"
            )
        if spec.idempotent and spec.context_param is None:
            raise ValueError(
                f"tool {spec.name!r}: idempotent=True needs a ToolContext parameter "
                "(it must pass ctx.idempotency_key to its backend)"
            )
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
        abandon_after_s: float = DEFAULT_ABANDON_AFTER_S,
        idempotent: bool = False,
        confirm: bool | str | Callable[[dict[str, Any]], str] = False,
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
                    abandon_after_s=abandon_after_s,
                    idempotent=idempotent,
                    confirm=confirm,
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
