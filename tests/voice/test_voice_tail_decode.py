"""The end-of-turn decode started on a quiet tail: the VAD's look between frames
(``SileroVad.peek``, ``VadSegmenter.tail_quiet``) and how ``VoiceInput`` starts, keeps and
voids that decode. Stream positions only: nothing here depends on the machine's speed."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from voice_helpers import RATE, speech

from peripherals.asr import AsrFinal
from peripherals.resample import resample
from peripherals.vad import SileroVad, SpeechPaused, VadSegmenter
from voice_agent.events import Event, TranscriptFinal, UserSpeechPaused
from voice_agent.voice.input import VoiceInput

FRAME_MS = 20  # the transports' framing


def chunks(x: np.ndarray, rate: int) -> list[np.ndarray]:
    n = rate * FRAME_MS // 1000
    return [x[i : i + n] for i in range(0, len(x), n)]


@pytest.mark.parametrize("rate", [16000, 8000])
def test_a_peek_leaves_the_vad_stream_as_it_was(rate: int) -> None:
    x, _, _ = speech("Can you tell me when the store opens?")
    x = resample(x, RATE, rate) if rate != RATE else x
    plain, peeking = SileroVad(rate), SileroVad(rate)
    f, need = plain.frame_size, plain.peek_samples
    ps, qs = [], []
    for i in range(0, len(x) - f, f):
        ps.append(plain.probability(x[i : i + f]))
        if i + f // 2 >= need:  # half a frame past the grid, as a 20 ms chunk often is
            peeking.peek(x[i + f // 2 - need : i + f // 2])
        qs.append(peeking.probability(x[i : i + f]))
    assert ps == qs


@pytest.mark.parametrize("rate", [16000, 8000])
def test_the_tail_reads_quiet_before_the_frame_grid_pauses(rate: int) -> None:
    x, _, last = speech("Where is my order?")
    x = np.concatenate([np.zeros(RATE // 2, np.float32), x, np.zeros(RATE, np.float32)])
    x = resample(x, RATE, rate) if rate != RATE else x
    end = (0.5 + last) * rate
    seg = VadSegmenter(SileroVad(rate))
    quiet_at = paused_at = None
    fed = 0
    for c in chunks(x, rate):
        events = seg.process(c)
        fed += len(c)
        if paused_at is None and any(isinstance(e, SpeechPaused) for e in events):
            paused_at = fed
        if quiet_at is None and paused_at is None and seg.tail_quiet():
            quiet_at = fed
    assert paused_at is not None and quiet_at is not None
    # after the last word (not inside it), and at least one 20 ms chunk before the grid's pause
    assert end <= quiet_at <= paused_at - rate * FRAME_MS // 1000


class ScriptedPeekVad:
    """A peeking VAD on a script: frames starting before ``speech_until`` are speech; the
    tail reads quiet once the audio fed passes ``speech_until`` + ``quiet_after``, and at the
    positions in ``dips`` (a closure inside a word)."""

    sample_rate = RATE
    frame_size = 512
    peek_samples = 576

    def __init__(
        self,
        speech_until: int,
        dips: tuple[int, ...] = (),
        quiet_after: int = 160,
        fading: float = 0.9,
    ):
        self.speech_until, self.dips, self.quiet_after = speech_until, dips, quiet_after
        self.fading = fading  # the tail's probability after speech_until, before it is quiet
        self.fed = 0  # frame starts, in samples
        self.tail = 0  # samples fed (set by the test's feeder)

    def probability(self, frame: np.ndarray) -> float:
        start, self.fed = self.fed, self.fed + len(frame)
        return 0.9 if start < self.speech_until else 0.0

    def peek(self, recent: np.ndarray) -> float:
        quiet = self.tail >= self.speech_until + self.quiet_after or self.tail in self.dips
        if quiet:
            return 0.0
        return self.fading if self.tail >= self.speech_until else 0.9

    def reset(self) -> None:
        self.fed = 0


class RecordingAsr:
    """A StreamingAsr that records what it was asked; its text is the samples it had when
    its early decode started, so a test sees which audio the final covered."""

    def __init__(self, on_partial: object) -> None:
        self.samples = 0
        self.calls: list[tuple[str, int]] = []
        self.early: int | None = None

    def push(self, samples: np.ndarray, sample_rate: int) -> None:
        self.samples += len(samples)

    def speech_paused(self) -> None:
        self.calls.append(("paused", self.samples))
        if self.early is None:
            self.early = self.samples

    def speech_resumed(self) -> None:
        self.calls.append(("resumed", self.samples))
        self.early = None

    async def paused_text(self) -> str | None:
        await asyncio.sleep(0)
        return None if self.early is None else f"{self.early} samples"

    async def finalize(self) -> AsrFinal:
        text = f"{self.early if self.early is not None else self.samples} samples"
        self.samples, self.early = 0, None
        return AsrFinal(text, 0.0, 0.0, speculative=True)

    async def discard(self) -> None:
        self.samples, self.early = 0, None

    async def aclose(self) -> None:
        pass


async def run_script(  # type: ignore[no-untyped-def]
    vad: ScriptedPeekVad,
    total: int,
    tail_decode: bool = True,
    tail_quiet_below: float | None = None,
):
    events: list[Event] = []
    asrs: list[RecordingAsr] = []

    def make_asr(on_partial: object) -> RecordingAsr:
        asrs.append(RecordingAsr(on_partial))
        return asrs[-1]

    voice = VoiceInput(
        vad=VadSegmenter(vad),
        make_asr=make_asr,
        post=events.append,
        sample_rate=RATE,
        preroll_s=0.0,
        tail_decode=tail_decode,
        tail_quiet_below=tail_quiet_below,
    )
    x = np.zeros(total, dtype=np.float32)
    for c in chunks(x, RATE):
        vad.tail += len(c)
        await voice.process(c)
        await asyncio.sleep(0)
    await voice.aclose()
    return events, asrs[0], voice.turns


async def test_the_decode_starts_on_the_quiet_tail_and_the_pause_keeps_it() -> None:
    vad = ScriptedPeekVad(speech_until=16000)
    events, asr, turns = await run_script(vad, 32000)
    first = asr.calls[0]
    assert first[0] == "paused" and 16000 <= first[1] < 16000 + 512  # before the grid's pause
    assert [c for c, _ in asr.calls].count("resumed") == 0  # the pause kept it
    paused = [e for e in events if isinstance(e, UserSpeechPaused)]
    final = [e for e in events if isinstance(e, TranscriptFinal)]
    assert paused and final and final[-1].text == f"{first[1]} samples"
    assert (turns[0].tail_decodes, turns[0].tail_decodes_voided) == (1, 0)


async def test_a_quiet_dip_inside_speech_voids_its_decode_and_the_pause_decodes_again() -> None:
    vad = ScriptedPeekVad(speech_until=24000, dips=(9920,))  # a 20 ms chunk edge mid-speech
    events, asr, turns = await run_script(vad, 40000)
    kinds = [c for c, _ in asr.calls]
    assert kinds[:2] == ["paused", "resumed"]  # the dip's decode, voided once speech went on
    assert asr.calls[0][1] == 9920
    kept = asr.calls[2]  # the end's own decode (on its quiet tail) covers all the speech
    assert kept[0] == "paused" and kept[1] >= 24000
    final = [e for e in events if isinstance(e, TranscriptFinal)]
    assert final[-1].text == f"{kept[1]} samples"
    assert (turns[0].tail_decodes, turns[0].tail_decodes_voided) == (2, 1)


async def test_without_tail_decode_the_decode_starts_at_the_vad_pause() -> None:
    vad = ScriptedPeekVad(speech_until=16000)
    _, asr, turns = await run_script(vad, 32000, tail_decode=False)
    assert asr.calls[0][0] == "paused" and asr.calls[0][1] >= 16000 + 512
    assert turns[0].tail_decodes == 0


@pytest.mark.parametrize(
    ("below", "starts_at", "tail_decodes"),
    [(None, 16896 + 64, 0), (0.5, 16000, 1)],  # the grid's pause (frame end + chunk) / the tail
)
async def test_the_tail_threshold_sets_how_soon_a_fading_tail_reads_quiet(
    below: float | None, starts_at: int, tail_decodes: int
) -> None:
    # after the speech the tail reads 0.45 for 100 ms, then 0: quiet at once under 0.5; under
    # the VAD's end threshold (0.35) not before the frame grid pauses
    vad = ScriptedPeekVad(speech_until=16000, quiet_after=1600, fading=0.45)
    _, asr, turns = await run_script(vad, 32000, tail_quiet_below=below)
    first = asr.calls[0]
    assert first[0] == "paused" and starts_at <= first[1] < starts_at + 320
    assert (turns[0].tail_decodes, turns[0].tail_decodes_voided) == (tail_decodes, 0)
