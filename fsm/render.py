"""Render a `MachineDefinition` for the docs: a Markdown table and a Mermaid diagram.

Both renders are deterministic: rows and edges follow the order of `states`,
then of `events`, then declaration order, so a regenerated doc only changes
when the table does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fsm.definition import MachineDefinition

__all__ = ["render_markdown", "render_mermaid"]

_MERMAID_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def render_markdown(definition: MachineDefinition) -> str:
    """The table as Markdown (see `MachineDefinition.to_markdown`)."""
    lines = [
        "| state | event | guard | next state | actions |",
        "|---|---|---|---|---|",
    ]
    for state in definition.states:
        if definition.is_final(state):
            lines.append(_md_row(state, "*(any)*", "", "", "final state: every event is ignored"))
            continue
        for event in definition.events:
            for transition in definition.transitions_for(state, event):
                target = "*(internal)*" if transition.target is None else transition.target
                lines.append(
                    _md_row(
                        state,
                        event.__name__,
                        transition.label,
                        target,
                        ", ".join(transition.action_names),
                    )
                )
            ignore = definition.ignore_for(state, event)
            if ignore is not None:
                reason = f"ignored: {ignore.reason}" if ignore.reason else "ignored"
                # after guarded rows, the ignore is what happens when no guard passes
                guard = "*(no guard passed)*" if definition.transitions_for(state, event) else ""
                lines.append(_md_row(state, event.__name__, guard, "*(ignored)*", reason))
    return "\n".join(lines) + "\n"


def render_mermaid(definition: MachineDefinition) -> str:
    """The machine as a Mermaid diagram (see `MachineDefinition.to_mermaid`)."""
    ids = _mermaid_ids(definition.states)
    lines = ["stateDiagram-v2"]
    for state in definition.states:
        if ids[state] != state:
            lines.append(f'    state "{_mermaid_text(state)}" as {ids[state]}')
    lines.append(f"    [*] --> {ids[definition.initial]}")
    for state in definition.states:
        if definition.is_final(state):
            continue
        for event in definition.events:
            for transition in definition.transitions_for(state, event):
                text = event.__name__
                if transition.label:
                    text += f" [{transition.label}]"
                if transition.action_names:
                    text += " / " + ", ".join(transition.action_names)
                if transition.target is None:
                    text += " (internal)"
                target = state if transition.target is None else transition.target
                lines.append(f"    {ids[state]} --> {ids[target]} : {_mermaid_text(text)}")
    for state in definition.final:
        lines.append(f"    {ids[state]} --> [*]")
    return "\n".join(lines) + "\n"


def _md_row(*cells: str) -> str:
    return "| " + " | ".join(_md_cell(cell) for cell in cells) + " |"


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _mermaid_ids(states: Sequence[str]) -> dict[str, str]:
    """Mermaid ids: the state itself when it is a plain identifier, else `s<index>`."""
    ids: dict[str, str] = {}
    for index, state in enumerate(states):
        plain = _MERMAID_ID.fullmatch(state) is not None
        ids[state] = str(state) if plain else f"s{index}"
    return ids


def _mermaid_text(text: str) -> str:
    """Escape what Mermaid would parse: entity codes for #, ;, <, >, quotes, newlines."""
    for raw, code in (("#", "#35;"), (";", "#59;"), ("<", "#lt;"), (">", "#gt;"), ('"', "#quot;")):
        text = text.replace(raw, code)
    return text.replace("\n", " ")
