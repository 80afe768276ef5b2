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


def _resolve(ref: Ref, result_of: ResultOf, user_text: str) -> Any:
    if isinstance(ref, UserRef):
        if normalize_text(ref.text) not in normalize_text(user_text):
            raise Unavailable(f"user has not said {ref.text!r}")
        return ref.text
    return lookup(result_of(ref.call_id), ref.path)
