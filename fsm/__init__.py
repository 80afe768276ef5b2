"""A small, typed, asyncio event-driven state machine engine (no audio, no LLM).

Declare the table as data (`Transition`, `Ignore`, `MachineDefinition`; it is
validated when built and renders itself as Markdown or Mermaid), then run it
with `Machine` over a context object. Time comes from an injected `Clock`.
"""

from fsm.clock import AutojumpClock, Clock, ManualClock, MonotonicClock, track_thread_job
from fsm.deadline import CancelScope, fail_after, fail_at, move_on_after, move_on_at
from fsm.definition import ANY_STATE, Action, Guard, Ignore, MachineDefinition, Transition
from fsm.errors import DefinitionError, MachineClosed
from fsm.events import ActionFailed, Event
from fsm.machine import Machine, Outcome, TraceRecord

__all__ = [
    "ANY_STATE",
    "Action",
    "ActionFailed",
    "AutojumpClock",
    "CancelScope",
    "Clock",
    "DefinitionError",
    "Event",
    "fail_after",
    "fail_at",
    "move_on_after",
    "move_on_at",
    "Guard",
    "Ignore",
    "Machine",
    "MachineClosed",
    "MachineDefinition",
    "ManualClock",
    "MonotonicClock",
    "Outcome",
    "TraceRecord",
    "Transition",
    "track_thread_job",
]
