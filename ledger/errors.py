"""The ledger's error vocabulary."""

from __future__ import annotations

__all__ = ["LedgerClosed", "LedgerError"]


class LedgerError(ValueError):
    """An append (or a loaded file) breaks the ledger's protocol.

    The message names the offending entry/ids (or file line). Nothing is
    recorded by an append that raises it.
    """


class LedgerClosed(LedgerError):
    """`append` was called after `Ledger.close()`."""
