"""The shared ledger of a voice-agent session: append-only, timestamped, rendered.

`Ledger` records entries (`ledger.entries`) and derives calls, futures, forks
and the LLM's messages from them; `JsonlSink`/`load_jsonl` persist it (with
`redact` masking private digits); `format_session` prints a recorded session.
"""

from ledger.entries import ENTRY_ADAPTER, Entry, Outcome
from ledger.errors import LedgerClosed, LedgerError
from ledger.ledger import Ledger, Sink, Subscriber
from ledger.persist import JsonlSink, check_directory, load_jsonl, redact_entry
from ledger.redact import mask_url_secrets, redact, redact_secrets
from ledger.render import ProtocolError, check_protocol, render_messages
from ledger.show import format_directory, format_session
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
    "check_directory",
    "check_protocol",
    "format_directory",
    "format_session",
    "load_jsonl",
    "mask_url_secrets",
    "redact",
    "redact_entry",
    "redact_secrets",
    "render_messages",
]
