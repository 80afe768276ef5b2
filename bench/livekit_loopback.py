"""Voice-to-voice latency and barge-in stop through LiveKit's rtc objects, measured from the audio.

    .venv/bin/python bench/livekit_loopback.py [--ttft-ms 300] [--barge-ins 4] [--json OUT]

The same caller recordings as ``bench/voice_latency.py`` (piper, 10
questions; a question whose long answer is interrupted) are answered twice in
one run, in real time, against the oracle LLM:

- ``files``: the file transport (``voice-agent run --realtime``), the baseline;
- ``livekit``: :class:`RoomCall` in a room stand-in: the recording is spoken
  into an ``rtc.AudioSource`` whose ``LocalAudioTrack`` the agent reads with
  ``rtc.AudioStream`` at 16 kHz; the agent speaks into its own
  ``AudioSource``/``LocalAudioTrack``; a subscriber ``AudioStream`` on each
  track timestamps every 20 ms frame as it arrives.

LiveKit voice-to-voice = the caller's last audible frame of a question (as
the agent received it) → the agent's first audible frame (as a subscriber
received it). Barge-in stop = the interruption's first audible frame → the
agent's last audible frame (its queue is cleared with ``clear_queue``).
``clear_to_silence_ms``: the transport's own part, ``RoomAudioSink.clear()``
→ the last audible frame a subscriber gets. No SFU, no network, no Opus: this
is the engine + the SDK's audio path, not a call over the internet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import voice_latency as vl  # noqa: E402
from livekit import rtc  # noqa: E402

from voice_agent.bench.livekit_loopback import (  # noqa: E402
    Ear,
    LoopbackRoom,
    Mic,
    audio_publication,
    remote_participant,
    until,
)
from voice_agent.bench.oracle import OracleServer  # noqa: E402
from voice_agent.bench.runner import build_registry  # noqa: E402
from voice_agent.transports.livekit_audio import RoomAudioSink  # noqa: E402
from voice_agent.transports.livekit_room import RoomCall  # noqa: E402

RATE = vl.RATE
AUDIBLE = vl.AUDIBLE
MAX_ANSWER_S = 15.0  # an answer must start within this after the question (s)
# The interruption starts this long after the question ends (s): later than voice_latency's
# 3.5 s so that the answer has begun even on a loaded machine (both transports get it).
BARGE_AFTER_S = 6.0


def _loud(ear: Ear, after: float, before: float) -> list[float]:
    return [
        t
        for t, f in zip(ear.times, ear.frames, strict=True)
        if after <= t <= before and np.abs(f).max() > AUDIBLE
    ]


async def livekit_run(audio: np.ndarray, scen: Any) -> tuple[Ear, Ear, float]:
    """Speak ``audio`` into a RoomCall over rtc; returns (caller ear, agent ear, t0 of sample 0)."""
    t0_box: list[float] = []

    async def speak(mic: Mic, caller_ear: Ear, agent_ear: Ear) -> None:
        t0_box.append(time.monotonic())
        mic.say(audio)
        await until(lambda: mic.idle, len(audio) / RATE + 60, "the recording to play")

    caller_ear, agent_ear = await livekit_call(scen, speak)
    # t0 is when the recording was queued; the caller ear says when sample 0 arrived
    first = next((t for t in caller_ear.times if t >= t0_box[0]), t0_box[0])
    return caller_ear, agent_ear, first


async def livekit_call(scen: Any, drive: Any) -> tuple[Ear, Ear]:
    """A RoomCall over rtc with the oracle for ``scen``; ``drive(mic, caller_ear, agent_ear)``
    plays the caller. Returns the ears."""
    from fsm import MonotonicClock

    tools = build_registry(scen, MonotonicClock(), [])
    async with OracleServer(scen) as oracle:
        room = LoopbackRoom(name="bench")
        call = RoomCall(room, vl.config_for(oracle.base_url), tools=tools)
        task = asyncio.get_running_loop().create_task(call.run())
        mic, agent_ear, caller_ear = Mic(), Ear(), Ear()
        try:
            await until(lambda: bool(room.published), 60, "the agent's track")
            agent_ear.start(room.published[0])
            caller_ear.start(mic.track)
            mic.start()
            caller = remote_participant("caller")
            room.join(caller)
            room.emit("track_subscribed", mic.track, audio_publication("TR_caller"), caller)
            await until(lambda: "listening" in room.states(), 60, "the engine to listen")
            await asyncio.sleep(0.5)
            await drive(mic, caller_ear, agent_ear)
            await asyncio.sleep(1.0)
            room.leave(caller)
            await asyncio.wait_for(task, 30)
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await agent_ear.aclose()
            await caller_ear.aclose()
            await mic.aclose()
    return caller_ear, agent_ear


async def livekit_barge_ins(scen: Any, n: int) -> list[dict[str, Any]]:
    """``n`` times: ask, let the long answer play 1.5 s, interrupt; stop = onset → last agent frame."""
    question = vl.synthesize(vl.UTTERANCES[3], 1.0)
    interruption = vl.synthesize(vl.INTERRUPTION, 1.0)
    rows: list[dict[str, Any]] = []

    async def drive(mic: Mic, caller_ear: Ear, agent_ear: Ear) -> None:
        for _ in range(n):
            mic.say(question)
            await until(lambda: mic.idle, 30, "the question")
            asked = time.monotonic()

            def answered(a: float = asked) -> bool:
                return bool(_loud(agent_ear, a, 1e18))

            try:
                await until(answered, 30, "the answer")
            except TimeoutError:
                rows.append({"error": "no answer to interrupt"})
                continue
            await asyncio.sleep(1.5)
            said = time.monotonic()
            mic.say(interruption)
            await until(lambda: mic.idle, 30, "the interruption")
            await asyncio.sleep(1.5)
            heard = _loud(caller_ear, said, 1e18)
            if not heard:
                rows.append({"error": "the interruption did not arrive"})
                continue
            onset = heard[0]
            last = onset
            for t in _loud(agent_ear, onset, onset + 5.0):
                if t - last > 0.3:
                    break
                last = t
            rows.append({"stop_ms": round((last - onset) * 1000, 1)})
            await asyncio.sleep(8.0)  # the short answer to the interruption, then quiet

    await livekit_call(scen, drive)
    return rows


def ear_spans(ear: Ear, after: float, gap_s: float = 0.4) -> list[tuple[float, float]]:
    """(first, last) arrival times of the audible stretches an ear got, gaps < ``gap_s`` merged."""
    out: list[tuple[float, float]] = []
    for t in _loud(ear, after, float("inf")):
        if out and t - out[-1][1] <= gap_s:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def caller_utterances(
    caller_ear: Ear, t0: float, placed: list[vl.Placed]
) -> list[tuple[float, float] | None]:
    """Each placed utterance's (onset, end) as the agent received it, from the audio.

    The utterances are seconds apart, so the caller's audible stretches map to
    them in order; if a stretch is missing or split, each utterance takes the
    stretch nearest to where the recording puts it (relative to the first one).
    """
    spans = ear_spans(caller_ear, t0 - 0.5)
    if len(spans) == len(placed):
        return list(spans)
    if not spans:
        return [None] * len(placed)
    origin = spans[0][0] - placed[0].start_s
    out: list[tuple[float, float] | None] = []
    for p in placed:
        near = min(spans, key=lambda sp: abs(sp[0] - (origin + p.start_s)))
        out.append(near if abs(near[0] - (origin + p.start_s)) < 1.0 else None)
    return out


def livekit_turns(
    caller_ear: Ear, agent_ear: Ear, t0: float, placed: list[vl.Placed]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p, span in zip(placed, caller_utterances(caller_ear, t0, placed), strict=True):
        if p.kind != "question":
            continue
        if span is None:
            rows.append({"text": p.text, "error": "the caller's question did not arrive"})
            continue
        end = span[1]
        answer = _loud(agent_ear, end, end + MAX_ANSWER_S)
        if not answer:
            rows.append({"text": p.text, "error": "no answer"})
            continue
        rows.append({"text": p.text, "voice_to_voice_ms": round((answer[0] - end) * 1000, 1)})
    return rows


async def clear_to_silence(n: int = 10) -> list[float]:
    """``RoomAudioSink.clear()`` → the last audible frame at a subscriber (ms), ``n`` times."""
    out = []
    for _ in range(n):
        source = rtc.AudioSource(24000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("agent", source)
        sink, ear = RoomAudioSink(source), Ear()
        ear.start(track)
        t = np.arange(24000 * 2) / 24000
        await sink.write((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
        await asyncio.sleep(0.6)
        cleared = time.monotonic()
        sink.clear()
        await asyncio.sleep(0.4)
        late = _loud(ear, cleared, cleared + 0.4)
        out.append(round(((late[-1] - cleared) if late else 0.0) * 1000, 1))
        await sink.aclose()
        await ear.aclose()
        await source.aclose()
    return out


async def main_async(ttft_ms: float, barge_ins: int, gap_s: float) -> dict[str, Any]:
    items, t = [], 0.5
    for text in vl.UTTERANCES:
        items.append((t, text, 1.0, "question"))
        t += len(vl.synthesize(text, 1.0)) / RATE + gap_s
    audio, placed = vl.build_recording(items, t)
    seg = [vl.offline_transcript(vl.synthesize(p.text, 1.0)) for p in placed]
    scen = vl.scenario([(s, vl.SHORT_ANSWER) for s in seg], ttft_ms, "livekit_latency")

    result, exchanges, _, _ = await vl.run_one(audio, scen, True)
    files_rows = vl.turn_metrics(result, exchanges, placed)
    caller_ear, agent_ear, t0 = await livekit_run(audio, scen)
    lk_rows = livekit_turns(caller_ear, agent_ear, t0, placed)

    b_items, t = [], 0.5
    question = vl.UTTERANCES[3]
    qlen = len(vl.synthesize(question, 1.0)) / RATE
    for _ in range(barge_ins):
        b_items.append((t, question, 1.0, "question"))
        b_items.append((t + qlen + BARGE_AFTER_S, vl.INTERRUPTION, 1.0, "interruption"))
        t += qlen + BARGE_AFTER_S + 2.0 + gap_s + 2.0
    b_audio, b_placed = vl.build_recording(b_items, t)
    q_text = vl.offline_transcript(vl.synthesize(question, 1.0))
    i_text = vl.offline_transcript(vl.synthesize(vl.INTERRUPTION, 1.0))
    b_scen = vl.scenario(
        [(q_text, vl.LONG_ANSWER), (i_text, "Okay, go ahead.")] * barge_ins, ttft_ms, "barge_in"
    )
    b_result, _, _, _ = await vl.run_one(b_audio, b_scen, True)
    files_barges = vl.barge_metrics(b_result, b_placed)
    lk_barges = await livekit_barge_ins(b_scen, barge_ins)
    clears = await clear_to_silence()

    def v2v(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return vl.summary([r["voice_to_voice_ms"] for r in rows if "voice_to_voice_ms" in r])

    files_v2v, lk_v2v = v2v(files_rows), v2v(lk_rows)
    ratio = (
        round(lk_v2v["p50"] / files_v2v["p50"], 2) if lk_v2v["p50"] and files_v2v["p50"] else None
    )
    return {
        "settings": {
            "oracle_ttft_ms": ttft_ms,
            "questions": len(vl.UTTERANCES),
            "gap_s": gap_s,
            "rate_hz": RATE,
            "load_average_1min": round(os.getloadavg()[0], 1),
        },
        "voice_to_voice_ms": {
            "files": files_v2v,
            "livekit": lk_v2v,
            "livekit_over_files_p50": ratio,
        },
        "barge_in_stop_ms": {
            "files": vl.summary([r["stop_ms"] for r in files_barges if "stop_ms" in r]),
            "livekit": vl.summary([r["stop_ms"] for r in lk_barges if "stop_ms" in r]),
        },
        "clear_to_silence_ms": vl.summary(clears),
        "turns": {"files": files_rows, "livekit": lk_rows},
        "barge_ins": {"files": files_barges, "livekit": lk_barges},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ttft-ms", type=float, default=300.0, help="oracle time to first token")
    parser.add_argument("--barge-ins", type=int, default=4, help="interruptions to measure")
    parser.add_argument(
        "--gap-s", type=float, default=vl.GAP_AFTER_S, help="silence after each question (s)"
    )
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    report = asyncio.run(main_async(args.ttft_ms, args.barge_ins, args.gap_s))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
