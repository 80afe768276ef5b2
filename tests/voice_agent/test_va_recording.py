"""The call recording's agent channel is what the caller heard, on the caller's timeline."""

from __future__ import annotations

import numpy as np

from voice_agent.recording import CallRecorder, RecordingSink


class FakeSink:
    """A stand-in speaker (a fake, for the bookkeeping only): plays when told to."""

    sample_rate = 8000
    paused = False

    def __init__(self) -> None:
        self.queued = 0
        self.played_samples = 0

    async def write(self, samples: np.ndarray) -> None:
        self.queued += len(samples)

    def play(self, n: int) -> None:
        n = min(n, self.queued)
        self.queued -= n
        self.played_samples += n

    def clear(self) -> int:
        dropped, self.queued = self.queued, 0
        return dropped

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    async def wait_drained(self) -> None: ...
    async def aclose(self) -> None: ...


async def test_audio_cleared_by_a_barge_in_never_reaches_the_recording() -> None:
    inner = FakeSink()
    sink = RecordingSink(inner)  # type: ignore[arg-type]
    rec = CallRecorder(sink, 8000)
    frame = np.zeros(160, dtype=np.float32)
    rec.caller_frame(frame)  # 0-160: nothing played yet
    await sink.write(np.full(400, 0.5, dtype=np.float32))
    inner.play(160)
    rec.caller_frame(frame)  # 160-320: the agent's first 160 samples
    inner.play(100)
    assert sink.clear() == 140  # the caller barged in: 140 samples never played
    rec.caller_frame(frame)  # 320-480: the 100 played before the clear
    await sink.write(np.full(50, -0.5, dtype=np.float32))
    inner.play(50)
    rec.caller_frame(frame)  # 480-640: the next answer
    agent = rec._agent
    assert np.all(agent[:160] == 0)
    assert np.all(agent[160:420] == 0.5)  # 160 + 100 heard samples, back to back
    assert np.all(agent[480:530] == -0.5)
    assert len(agent) == 530 and abs(float(agent[420:480].sum())) == 0
