"""Where each turn's time went: a per-turn breakdown from the voice input's records,
the ledger and the agent's audio (``voice-agent run`` prints it).

All times are milliseconds after the end of the caller's speech as the VAD
dated it (the start of the silence that ended the turn):

- ``decode_started``: the end-of-turn decode started (at the quiet tail or the
  VAD's pause: ``voice.asr_tail_decode``), and ``decode``: its own duration
  (not a time after the end of speech);
- ``decided``: the end-of-turn decision applied (turn model + transcript), with
  its ``reason`` and the model's ``probability``;
- ``turn_ended``: ``UserSpeechEnded`` posted;
- ``final``: ``TranscriptFinal`` posted;
- ``llm_request``: the turn's LLM request started (before ``final`` when the
  preemptive generation started at the pause and was adopted: negative is early);
- ``llm_first_text``: the first chunk of the answer handed to the voice (the
  LLM's first token plus the first clause);
- ``first_audio``: the agent's first audible sample after the speech ended.

Clock stages need the stream and the clock to run together (a real-time
transport); ``first_audio`` and ``turn_ended`` are stream times and exist
always.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ledger import entries as le

from .input import UtteranceTiming

AUDIBLE = 0.01  # |sample| above this is audible (full scale 1.0)
_AHEAD = re.compile(r"started (-?[\d.]+)s before the turn ended")


@dataclass(frozen=True)
class TurnTimings:
    """One answered turn's breakdown (ms after the VAD-dated end of speech)."""

    index: int
    text: str
    reason: str | None
    probability: float | None
    decode_started: float | None
    decode: float | None
    decided: float | None
    turn_ended: float | None
    final: float | None
    llm_request: float | None
    llm_first_text: float | None
    first_audio: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_audible_after(audio: np.ndarray, rate: int, t: float) -> float | None:
    start = max(0, int(t * rate))
    idx = np.flatnonzero(np.abs(audio[start:]) > AUDIBLE)
    return None if len(idx) == 0 else (start + int(idx[0])) / rate


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000.0, 1)


def turn_timings(
    utterances: list[UtteranceTiming],
    entries: list[le.Entry],
    agent_audio: np.ndarray,
    sample_rate: int,
    t0: float | None,
) -> list[TurnTimings]:
    """The breakdown of every utterance that ended a turn (not dropped, non-empty).

    ``t0`` is the clock time of stream time 0 (None: stream and clock are not
    aligned, e.g. a fast, virtual stream clock; clock stages are then None).
    """
    requests = [
        e for e in entries if isinstance(e, le.LlmRequestStarted) and e.reason == "user_turn"
    ]
    planned = [e for e in entries if isinstance(e, le.AgentTextPlanned)]
    adopted = {
        n.text.split(":", 1)[0]: float(m.group(1))
        for n in entries
        if isinstance(n, le.Note) and (m := _AHEAD.search(n.text))
    }
    rows: list[TurnTimings] = []
    for u in utterances:
        if u.dropped or not u.text or u.speech_end_s is None or u.final_at is None:
            continue
        end_clock = None if t0 is None else t0 + u.speech_end_s

        def rel(clock_t: float | None, end_clock: float | None = end_clock) -> float | None:
            return None if clock_t is None or end_clock is None else _ms(clock_t - end_clock)

        request = next((r for r in requests if r.t >= u.final_at - 1e-6), None)
        request_at = None
        if request is not None:
            request_at = request.t - adopted.get(request.response_id, 0.0)
        text_at = next(
            (p.t for p in planned if request is not None and p.response_id == request.response_id),
            None,
        )
        first = _first_audible_after(agent_audio, sample_rate, u.speech_end_s)
        decision = u.turn.decision if u.turn is not None else None
        rows.append(
            TurnTimings(
                index=u.index,
                text=u.text,
                reason=decision.reason if decision else None,
                probability=None
                if decision is None or decision.probability is None
                else round(decision.probability, 3),
                decode_started=rel(u.early_decode_at),
                decode=_ms(u.decode_s),
                decided=rel(u.turn.decided_at) if u.turn is not None else None,
                turn_ended=_ms(u.ended_s - u.speech_end_s) if u.ended_s is not None else None,
                final=rel(u.final_at),
                llm_request=rel(request_at),
                llm_first_text=rel(text_at),
                first_audio=None if first is None else _ms(first - u.speech_end_s),
            )
        )
    return rows


def format_timings(rows: list[TurnTimings]) -> str:
    """A fixed-width table, one line per turn."""
    cols = (
        "decode_started",
        "decode",
        "decided",
        "turn_ended",
        "final",
        "llm_request",
        "llm_first_text",
        "first_audio",
    )
    head = f"{'turn':>4}  {'decision':<22}" + "".join(f"{c:>15}" for c in cols)
    lines = ["per-turn timings (ms after the end of speech):", head]
    for r in rows:
        how = r.reason or "vad"
        if r.probability is not None:
            how += f" p={r.probability:.2f}"
        cells = "".join(
            f"{'-' if getattr(r, c) is None else f'{getattr(r, c):.0f}':>15}" for c in cols
        )
        lines.append(f"{r.index:>4}  {how:<22}{cells}")
    return "\n".join(lines)
