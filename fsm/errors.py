"""The engine's small error vocabulary."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DefinitionError", "MachineClosed"]


class DefinitionError(ValueError):
    """A machine definition is invalid.

    Raised once, when the definition is built, with every problem found;
    `problems` holds one human-readable line per problem, each naming the
    offending states and events.
    """

    def __init__(self, name: str, problems: Sequence[str]) -> None:
        self.name = name
        self.problems: list[str] = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        super().__init__(
            f"machine {name!r} has {count} definition problem{'s' if count != 1 else ''}:\n{lines}"
        )


class MachineClosed(RuntimeError):
    """The machine was closed with `aclose()`; it accepts no more events."""
