"""The unfinished-thought hint and the VAD's per-pause silence extension."""

from __future__ import annotations

import numpy as np
import pytest

from peripherals.vad import SpeechEnded, SpeechPaused, VadSegmenter
from voice_agent.voice.endpointing import likely_unfinished


@pytest.mark.parametrize(
    ("text", "unfinished"),
    [
        ("Thank you,", True),
        ("My order number is", True),
        ("I want to check on my", True),
        ("Well...", True),
        ("So the thing is -", True),
        ("Thank you.", False),
        ("Where is my order?", False),
        ("Hello there", False),
        ("", False),
    ],
)
def test_unfinished_thoughts_are_told_from_finished_ones(text, unfinished):
    assert likely_unfinished(text) is unfinished


class ScriptedVad:
    """A VAD whose probability per 512-sample frame comes from a script."""

    sample_rate = 16000
    frame_size = 512

    def __init__(self, probabilities: list[float]) -> None:
        self._p = iter(probabilities)

    def probability(self, frame: np.ndarray) -> float:
        return next(self._p, 0.0)

    def reset(self) -> None:
        pass


def run(seg: VadSegmenter, frames: int, extend_at_pause: float | None) -> tuple[list, int]:
    """All events, and the frame index at which SpeechEnded was emitted."""
    events, ended_at = [], -1
    for i in range(frames):
        new = seg.process(np.zeros(512, dtype=np.float32))
        events += new
        if any(isinstance(e, SpeechEnded) for e in new):
            ended_at = i
        if extend_at_pause is not None and any(isinstance(e, SpeechPaused) for e in new):
            seg.extend_pause(extend_at_pause)
    return events, ended_at


def test_extending_a_pause_delays_the_end_of_the_segment_by_that_much():
    speech = [0.9] * 20 + [0.0] * 80  # 0.64 s of speech, then 2.56 s of silence
    plain, plain_at = run(VadSegmenter(ScriptedVad(speech), min_silence_s=0.5), 100, None)
    longer, longer_at = run(VadSegmenter(ScriptedVad(speech), min_silence_s=0.5), 100, 0.7)
    end_plain = next(e for e in plain if isinstance(e, SpeechEnded))
    end_longer = next(e for e in longer if isinstance(e, SpeechEnded))
    assert end_plain.t == end_longer.t  # the segment still ends where the speech stopped
    delay_s = (longer_at - plain_at) * 512 / 16000  # ... but is declared 0.7 s of stream later
    assert delay_s == pytest.approx(0.7, abs=0.033)


def test_the_extension_applies_to_one_pause_only():
    speech = [0.9] * 20 + [0.0] * 10 + [0.9] * 20 + [0.0] * 40
    seg = VadSegmenter(ScriptedVad(speech), min_silence_s=0.5)
    events, ended_at = [], -1
    for i in range(90):
        new = seg.process(np.zeros(512, dtype=np.float32))
        if i < 25 and any(isinstance(e, SpeechPaused) for e in new):
            seg.extend_pause(5.0)  # the first pause only; the speech resumes after it
        if any(isinstance(e, SpeechEnded) for e in new):
            ended_at = i
        events += new
    # The second pause starts at frame 50 and ends the segment after the plain 0.5 s.
    assert ended_at == pytest.approx(50 + 0.5 * 16000 / 512, abs=2)
