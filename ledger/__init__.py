"""The shared ledger of a voice-agent session: append-only, timestamped, rendered.

`Ledger` records entries (`ledger.entries`) and derives calls, futures, forks
and the LLM's messages from them; `JsonlSink`/`load_jsonl` persist it (with
`redact` masking private digits); `format_session` prints a recorded session.
"""

from ledger.entries import ENTRY_ADAPTER, Entry, Outcome
from ledger.errors import LedgerClosed, LedgerError
from ledger.ledger import Ledger, Sink, Subscriber
from ledger.persist import JsonlSink, load_jsonl, redact_entry
from ledger.redact import redact
from ledger.render import ProtocolError, check_protocol, render_messages
from ledger.show import format_session
from ledger.views import CallStatus, CallView, ResponseView

__all__ = [
    "ENTRY_ADAPTER",
    "CallStatus",
    "CallView",
    "Entry",
    "JsonlSink",
    "Ledger",
    "LedgerClosed",
    "LedgerError",
    "Outcome",
    "ProtocolError",
    "ResponseView",
    "Sink",
    "Subscriber",
    "check_protocol",
    "format_session",
    "load_jsonl",
    "redact",
    "redact_entry",
    "render_messages",
]
