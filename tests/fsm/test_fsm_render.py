"""Markdown and Mermaid renders of a definition (checked structurally, no snapshots)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fsm import Event, Ignore, MachineDefinition, Transition


@dataclass(frozen=True, kw_only=True)
class Rang(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class Spoke(Event):
    words: int = 0


@dataclass(frozen=True, kw_only=True)
class HungUp(Event):
    pass


def long_enough(ctx: object, event: Spoke) -> bool:
    return event.words > 3


def greet(ctx: object, event: Event) -> None:
    pass


def answer(ctx: object, event: Event) -> None:
    pass


def count_words(ctx: object, event: Event) -> None:
    pass


def make() -> MachineDefinition:
    return MachineDefinition(
        name="phone",
        states=("waiting", "talking", "over"),
        initial="waiting",
        events=(Rang, Spoke, HungUp),
        transitions=(
            Transition("waiting", Rang, "talking", actions=[greet]),
            Transition("talking", Spoke, guard=long_enough, actions=[answer, count_words]),
            Transition("talking", Spoke, label="short | quiet"),
            Transition("*", HungUp, "over"),
        ),
        ignored=(
            Ignore("waiting", Spoke, "nobody on the line"),
            Ignore("talking", Rang, "line busy"),
        ),
        final=("over",),
    )


def table_rows(markdown: str) -> list[list[str]]:
    lines = markdown.strip().splitlines()
    assert lines[0] == "| state | event | guard | next state | actions |"
    assert lines[1] == "|---|---|---|---|---|"
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def test_markdown_has_a_row_per_transition_and_ignored_pair_in_state_then_event_order() -> None:
    rows = table_rows(make().to_markdown())
    assert [(r[0], r[1]) for r in rows] == [
        ("waiting", "Rang"),
        ("waiting", "Spoke"),
        ("waiting", "HungUp"),
        ("talking", "Rang"),
        ("talking", "Spoke"),
        ("talking", "Spoke"),
        ("talking", "HungUp"),
        ("over", "*(any)*"),
    ]
    assert rows[0] == ["waiting", "Rang", "", "talking", "greet"]
    assert rows[1] == ["waiting", "Spoke", "", "*(ignored)*", "ignored: nobody on the line"]
    assert rows[3][4] == "ignored: line busy"
    assert rows[4] == ["talking", "Spoke", "long_enough", "*(internal)*", "answer, count_words"]
    assert rows[5][2] == "short \\| quiet"  # a pipe in a label is escaped, not a new column
    assert rows[7][4].startswith("final state")


def test_markdown_covers_every_non_final_state_event_pair() -> None:
    definition = make()
    pairs = {(r[0], r[1]) for r in table_rows(definition.to_markdown())}
    for state in ("waiting", "talking"):
        for event in definition.events:
            assert (state, event.__name__) in pairs


def test_mermaid_has_initial_every_transition_edge_and_final_exit() -> None:
    definition = make()
    lines = definition.to_mermaid().strip().splitlines()
    assert lines[0] == "stateDiagram-v2"
    body = [line.strip() for line in lines[1:]]
    assert body[0] == "[*] --> waiting"
    assert "waiting --> talking : Rang / greet" in body
    assert "talking --> talking : Spoke [long_enough] / answer, count_words (internal)" in body
    assert "talking --> talking : Spoke [short | quiet] (internal)" in body
    assert "waiting --> over : HungUp" in body
    assert "talking --> over : HungUp" in body
    assert body[-1] == "over --> [*]"
    edges = [line for line in body if " : " in line]
    expected = sum(
        len(definition.transitions_for(state, event))
        for state in definition.states
        for event in definition.events
    )
    assert len(edges) == expected == 5


def test_mermaid_escapes_lambda_names_and_aliases_non_identifier_states() -> None:
    definition = MachineDefinition(
        name="odd",
        states=("on hold", "done"),
        initial="on hold",
        events=(Rang,),
        transitions=(Transition("on hold", Rang, "done", guard=lambda ctx, event: True),),
        ignored=(Ignore("on hold", Rang, "otherwise: keep holding"),),
        final=("done",),
    )
    mermaid = definition.to_mermaid()
    assert 'state "on hold" as s0' in mermaid
    assert "[*] --> s0" in mermaid
    assert "#lt;lambda#gt;" in mermaid and "<lambda>" not in mermaid


def test_renders_are_deterministic_across_builds() -> None:
    assert make().to_markdown() == make().to_markdown()
    assert make().to_mermaid() == make().to_mermaid()
