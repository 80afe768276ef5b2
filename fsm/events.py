"""The event base class and the one event the engine itself raises.

Events are immutable facts in the past tense (`UserSpeechStarted`). Declare
each one as a frozen, keyword-only dataclass subclass of `Event`; the
machine matches transitions on the exact class, and `event.type` (the class
name) is the discriminator used in traces and logs.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ActionFailed", "Event"]


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event. Subclasses must be `@dataclass(frozen=True, kw_only=True)`."""

    @property
    def type(self) -> str:
        """The event's class name, e.g. ``"UserSpeechStarted"``."""
        return type(self).__name__


@dataclass(frozen=True, kw_only=True)
class ActionFailed(Event):
    """An action raised while the machine handled an event.

    Posted by the machine itself. `action` is the action's `__qualname__`,
    `during` the `type` of the event being handled, and `error` reads
    ``"ValueError: message"``.
    """

    action: str
    during: str
    error: str
