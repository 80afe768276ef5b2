"""Templates inside scenario values: where a call argument's value comes from.

Syntax (inside any string of an expected call's ``arguments`` or a fact's
``say``):

- ``{{user:<text>}}`` — the literal ``<text>``, which the caller spoke: it can
  only be used once ``<text>`` appears (case- and space-insensitive) in a user
  message the model received.
- ``{{calls.<id>.result}}`` or ``{{calls.<id>.result.<key>.<index>...}}`` — a
  value from the result of the expected call ``<id>`` (a dotted path; an
  all-digit segment indexes a list). Usable once that result reached the model.

A string that is exactly one template takes the referenced value with its JSON
type (``"{{calls.a.result.id}}"`` → ``42``); a template embedded in a longer
string is interpolated as text. Anything else is a constant.

``render_arguments`` also gives a call's arguments the types of the tool's
JSON schema: ``{{user:5}}`` for an ``integer`` or ``number`` parameter is the
number 5 (what the caller says is text; the model sends the schema's type).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_CALL_EXPR = re.compile(r"^calls\.([A-Za-z0-9_\-]+)\.result((?:\.[A-Za-z0-9_\-]+)*)$")


class TemplateError(ValueError):
    """A template is malformed (raised while validating a scenario)."""


class Unavailable(LookupError):
    """A template cannot be filled from what has been received yet."""


@dataclass(frozen=True)
class CallRef:
    """``{{calls.<call_id>.result.<path>}}``."""

    call_id: str
    path: tuple[str | int, ...]


@dataclass(frozen=True)
class UserRef:
    """``{{user:<text>}}``."""

    text: str


Ref = CallRef | UserRef


def parse_expression(expr: str) -> Ref:
    """Parse the inside of one ``{{ }}``; raise TemplateError if malformed."""
    if expr.startswith("user:"):
        text = expr[len("user:") :].strip()
        if not text:
            raise TemplateError("'{{user:...}}' needs the spoken text after 'user:'")
        return UserRef(text)
    match = _CALL_EXPR.match(expr)
    if match is None:
        raise TemplateError(
            f"unknown template '{{{{{expr}}}}}': use '{{{{user:<text>}}}}' "
            "or '{{calls.<id>.result[.<path>]}}'"
        )
    segments = [s for s in match.group(2).split(".") if s]
    path = tuple(int(s) if s.isdigit() else s for s in segments)
    return CallRef(match.group(1), path)


def references(value: Any) -> list[Ref]:
    """Every template reference inside ``value`` (walks dicts and lists)."""
    refs: list[Ref] = []
    if isinstance(value, str):
        refs.extend(parse_expression(m.group(1)) for m in _TEMPLATE.finditer(value))
    elif isinstance(value, Mapping):
        for item in value.values():
            refs.extend(references(item))
    elif isinstance(value, list):
        for item in value:
            refs.extend(references(item))
    return refs


def normalize_text(text: str) -> str:
    """Lower-case and collapse whitespace (for presence checks)."""
    return " ".join(text.lower().split())


def lookup(result: Any, path: tuple[str | int, ...]) -> Any:
    """Follow ``path`` into a JSON value; raise Unavailable if it is absent."""
    value = result
    for segment in path:
        if isinstance(value, Mapping) and str(segment) in value:
            value = value[str(segment)]
        elif isinstance(value, list) and isinstance(segment, int) and segment < len(value):
            value = value[segment]
        else:
            raise Unavailable(f"path {'.'.join(map(str, path))} not in result")
    return value


ResultOf = Callable[[str], Any]
"""Returns the received result of an expected call id; raises Unavailable."""


def render(value: Any, *, result_of: ResultOf, user_text: str) -> Any:
    """Fill every template in ``value``.

    ``result_of(call_id)`` gives a received result (raises Unavailable when it
    has not arrived); ``user_text`` is all user text received. Raises
    Unavailable naming the first missing input.
    """
    if isinstance(value, Mapping):
        return {k: render(v, result_of=result_of, user_text=user_text) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, result_of=result_of, user_text=user_text) for v in value]
    if not isinstance(value, str):
        return value
    whole = _TEMPLATE.fullmatch(value.strip())
    if whole is not None:
        return _resolve(parse_expression(whole.group(1)), result_of, user_text)

    def _text(match: re.Match[str]) -> str:
        resolved = _resolve(parse_expression(match.group(1)), result_of, user_text)
        return resolved if isinstance(resolved, str) else json.dumps(resolved)

    return _TEMPLATE.sub(_text, value)


def render_arguments(
    arguments: Mapping[str, Any],
    schema: Mapping[str, Any],
    *,
    result_of: ResultOf,
    user_text: str,
) -> dict[str, Any]:
    """``render`` the arguments of a call, then ``coerce`` them to the tool's ``schema``."""
    rendered = render(dict(arguments), result_of=result_of, user_text=user_text)
    coerced = coerce(rendered, schema)
    return coerced if isinstance(coerced, dict) else rendered


def coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    """Give text the type ``schema`` asks for, where it reads as one; else keep it.

    ``integer`` / ``number``: ``"5"`` → 5, ``"1,200"`` → 1200, ``"5.50"`` → 5.5;
    ``boolean``: yes/true/no/false. Objects and arrays are walked through
    ``properties`` / ``items``. A schema that also allows ``string`` keeps text.
    """
    kinds = _types(schema)
    if isinstance(value, Mapping):
        props = schema.get("properties") or {}
        return {k: coerce(v, props.get(k) or {}) for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items") or {}
        return [coerce(v, items if isinstance(items, Mapping) else {}) for v in value]
    if not isinstance(value, str) or "string" in kinds:
        return value
    text = value.strip()
    if kinds & {"integer", "number"}:
        number = _number(text)
        if number is not None and ("number" in kinds or float(number).is_integer()):
            return int(number) if float(number).is_integer() and "integer" in kinds else number
    if "boolean" in kinds and text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    return value


def coercible(value: str, schema: Mapping[str, Any]) -> bool:
    """True when text ``value`` fits ``schema``'s scalar type (or the schema takes text)."""
    kinds = _types(schema)
    if not kinds or "string" in kinds:
        return True
    return not isinstance(coerce(value, schema), str)


_BOOLEANS = {"yes": True, "true": True, "no": False, "false": False}


def _types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return set()


def _number(text: str) -> int | float | None:
    cleaned = text.replace(",", "").replace("_", "")
    try:
        number = json.loads(cleaned)
    except json.JSONDecodeError:
        return None
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    return number


def _resolve(ref: Ref, result_of: ResultOf, user_text: str) -> Any:
    if isinstance(ref, UserRef):
        if normalize_text(ref.text) not in normalize_text(user_text):
            raise Unavailable(f"user has not said {ref.text!r}")
        return ref.text
    return lookup(result_of(ref.call_id), ref.path)
