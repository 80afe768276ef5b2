"""Build-time validation of MachineDefinition: every problem is reported by name."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pytest

from fsm import ActionFailed, DefinitionError, Event, Ignore, MachineDefinition, Transition


@dataclass(frozen=True, kw_only=True)
class Started(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class Stopped(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class Pinged(Event):
    pass


def build(**overrides: object) -> MachineDefinition:
    """A valid idle <-> running machine with a final `done`, with fields overridden."""
    fields: dict[str, object] = {
        "name": "demo",
        "states": ("idle", "running", "done"),
        "initial": "idle",
        "events": (Started, Stopped),
        "transitions": (
            Transition("idle", Started, "running"),
            Transition("running", Stopped, "done"),
        ),
        "ignored": (Ignore("idle", Stopped, "not running"), Ignore("running", Started, "already")),
        "final": ("done",),
    }
    fields.update(overrides)
    return MachineDefinition(**fields)  # type: ignore[arg-type]


def problems_of(**overrides: object) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        build(**overrides)
    return info.value.problems


def test_a_valid_definition_builds_and_answers_lookups() -> None:
    definition = build()
    assert definition.transitions_for("idle", Started)[0].target == "running"
    assert definition.transitions_for("idle", Stopped) == ()
    ignore = definition.ignore_for("idle", Stopped)
    assert ignore is not None and ignore.reason == "not running"
    assert definition.is_final("done") and not definition.is_final("idle")


def test_unknown_initial_and_final_states_are_named() -> None:
    problems = problems_of(initial="nowhere", final=("done", "gone"))
    assert any("initial state 'nowhere'" in p for p in problems)
    assert any("final state 'gone'" in p for p in problems)


def test_unknown_source_and_target_states_are_named() -> None:
    problems = problems_of(
        transitions=(
            Transition("idle", Started, "running"),
            Transition("running", Stopped, "done"),
            Transition("limbo", Started, "running"),
            Transition("idle", Stopped, "heaven"),
        ),
        ignored=(Ignore("running", Started), Ignore("purgatory", Stopped)),
    )
    assert any("unknown source state 'limbo'" in p for p in problems)
    assert any("unknown target state 'heaven'" in p for p in problems)
    assert any("ignore #1" in p and "unknown source state 'purgatory'" in p for p in problems)


def test_events_used_but_not_listed_are_named() -> None:
    problems = problems_of(
        transitions=(
            Transition("idle", Started, "running"),
            Transition("running", Stopped, "done"),
            Transition("running", Pinged),
        ),
        ignored=(
            Ignore("idle", Stopped),
            Ignore("running", Started),
            Ignore("idle", Pinged),
        ),
    )
    assert sum("event Pinged is not listed in events" in p for p in problems) == 2


def test_unreachable_state_is_named() -> None:
    problems = problems_of(
        states=("idle", "running", "done", "island"),
        transitions=(
            Transition("idle", Started, "running"),
            Transition("running", Stopped, "done"),
            Transition("island", Stopped, "done"),
        ),
        ignored=(
            Ignore("idle", Stopped),
            Ignore("running", Started),
            Ignore("island", Started),
        ),
    )
    assert problems == ["unreachable state 'island': no transition path leads to it from 'idle'"]


def test_trap_state_without_a_path_to_a_final_state_is_named() -> None:
    problems = problems_of(
        states=("idle", "running", "stuck", "done"),
        transitions=(
            Transition("idle", Started, "running"),
            Transition("idle", Stopped, "stuck"),
            Transition("running", Stopped, "done"),
            Transition("stuck", Started, "stuck"),
        ),
        ignored=(Ignore("running", Started), Ignore("stuck", Stopped)),
    )
    assert problems == ["trap state 'stuck': no final state is reachable from it"]


def test_without_final_states_a_state_with_no_way_out_is_a_trap() -> None:
    problems = problems_of(
        states=("idle", "running"),
        final=(),
        transitions=(
            Transition("idle", Started, "running"),
            Transition("running", Stopped),  # internal: does not leave
        ),
        ignored=(Ignore("idle", Stopped), Ignore("running", Started)),
    )
    assert problems == ["trap state 'running': no transition leaves it for another state"]


def test_a_pair_neither_handled_nor_ignored_is_named() -> None:
    problems = problems_of(ignored=(Ignore("idle", Stopped),))
    assert problems == [
        "unhandled pair: state 'running' x event Started is neither handled nor ignored"
    ]


def test_action_failed_listed_in_events_must_be_covered_like_any_event() -> None:
    problems = problems_of(events=(Started, Stopped, ActionFailed))
    assert any("state 'idle' x event ActionFailed" in p for p in problems)
    assert any("state 'running' x event ActionFailed" in p for p in problems)


def test_a_pair_both_handled_and_ignored_is_named() -> None:
    problems = problems_of(
        ignored=(
            Ignore("idle", Stopped),
            Ignore("running", Started),
            Ignore("running", Stopped, "oops"),
        )
    )
    assert problems == [
        "pair state 'running' x event Stopped is both handled (transition #1) and ignored (ignore #2)"
    ]


def test_a_transition_behind_an_unguarded_one_for_the_same_pair_is_reported() -> None:
    problems = problems_of(
        transitions=(
            Transition("idle", Started, "running"),
            Transition("idle", Started, "done"),
            Transition("running", Stopped, "done"),
        )
    )
    assert problems == [
        "transition #1 never fires in state 'idle' on Started: "
        "transition #0 has no guard and comes first"
    ]


def test_a_wildcard_after_a_specific_transition_is_an_allowed_fallback() -> None:
    definition = build(
        transitions=(
            Transition("running", Stopped, "done", label="specific"),
            Transition("*", Stopped, "done", label="fallback"),
            Transition("idle", Started, "running"),
        ),
        ignored=(Ignore("running", Started),),
    )
    assert [t.label for t in definition.transitions_for("running", Stopped)] == [
        "specific",
        "fallback",
    ]
    assert [t.label for t in definition.transitions_for("idle", Stopped)] == ["fallback"]


def test_wildcard_source_covers_every_non_final_state_only() -> None:
    definition = build(
        ignored=(Ignore("*", Pinged, "noise"), Ignore("idle", Stopped), Ignore("running", Started)),
        events=(Started, Stopped, Pinged),
    )
    assert definition.ignore_for("idle", Pinged) is not None
    assert definition.ignore_for("running", Pinged) is not None
    assert definition.ignore_for("done", Pinged) is None


def test_a_transition_out_of_a_final_state_is_reported() -> None:
    problems = problems_of(
        transitions=(
            Transition("idle", Started, "running"),
            Transition("running", Stopped, "done"),
            Transition("done", Started, "idle"),
        )
    )
    assert problems == [
        "transition #2 (Started: 'done' -> 'idle'): source 'done' is a final state "
        "(final states ignore every event)"
    ]


def test_events_must_be_frozen_event_dataclasses() -> None:
    class Loose(Event):  # no @dataclass(frozen=True)
        pass

    problems = problems_of(events=(Started, Stopped, Loose, str))
    assert any("event Loose is not a frozen dataclass" in p for p in problems)
    assert any("<class 'str'> is not an Event subclass" in p for p in problems)


def test_every_problem_is_collected_into_one_error_whose_message_names_them() -> None:
    with pytest.raises(DefinitionError) as info:
        build(
            states=("idle", "running", "done", "island"),
            initial="idle",
            ignored=(Ignore("idle", Stopped),),
            final=("done", "gone"),
        )
    error = info.value
    assert len(error.problems) >= 4
    message = str(error)
    assert message.startswith(f"machine 'demo' has {len(error.problems)} definition problems:")
    for name in ("'island'", "'gone'", "Started", "'running'"):
        assert name in message


def test_strenum_states_work_as_plain_strings() -> None:
    class S(StrEnum):
        IDLE = "idle"
        RUNNING = "running"
        DONE = "done"

    definition = build(
        states=tuple(S),
        initial=S.IDLE,
        transitions=(
            Transition(S.IDLE, Started, S.RUNNING),
            Transition(S.RUNNING, Stopped, S.DONE),
        ),
        final=(S.DONE,),
    )
    assert definition.transitions_for("idle", Started)[0].target == "running"


def test_a_single_callable_given_as_actions_is_rejected_at_once() -> None:
    def act(ctx: object, event: Started) -> None:
        pass

    with pytest.raises(TypeError, match="actions must be a sequence"):
        Transition("idle", Started, "running", actions=act)  # type: ignore[arg-type]


def test_label_defaults_to_the_guard_qualname() -> None:
    def ready(ctx: object, event: Started) -> bool:
        return True

    assert Transition("idle", Started, "running", guard=ready).label.endswith("ready")
    assert Transition("idle", Started, "running", guard=ready, label="is ready").label == "is ready"
    assert Transition("idle", Started, "running").label == ""


def test_a_pair_whose_transitions_are_all_guarded_must_say_what_happens_otherwise() -> None:
    def ready(ctx: object, event: Event) -> bool:
        return True

    def build(ignored: tuple[Ignore, ...]) -> MachineDefinition:
        return MachineDefinition(
            name="m",
            states=("idle", "running"),
            initial="idle",
            events=(Started, Stopped),
            transitions=(
                Transition("idle", Started, "running", guard=ready),
                Transition("running", Stopped, "idle"),
            ),
            ignored=(Ignore("idle", Stopped), Ignore("running", Started), *ignored),
        )

    with pytest.raises(DefinitionError) as info:
        build(())
    assert "state 'idle' x event Started: every transition is guarded (#0)" in str(info.value)
    definition = build((Ignore("idle", Started, "otherwise: not ready"),))
    assert definition.ignore_for("idle", Started) is not None
