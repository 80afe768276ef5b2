"""The speaker's ``on_played`` stays in step with what the device played when the
device ran dry between callbacks (a starved machine): the echo canceller's far end
must hold the silence the speaker played, or every underrun shifts its alignment."""

from __future__ import annotations

import numpy as np
from portaudio_fakes import StuckPortAudioStream

from peripherals.audio_io import MAX_UNDERRUN_S, AudioOutput

RATE = 16000


async def _speaker(
    stuck_streams: list[StuckPortAudioStream],
) -> tuple[AudioOutput, list[np.ndarray]]:
    played: list[np.ndarray] = []
    speaker = AudioOutput("fake", sample_rate=RATE, on_played=played.append)
    await speaker.start()
    return speaker, played


async def test_the_silence_of_an_underrun_reaches_on_played_before_the_next_block(
    stuck_streams: list[StuckPortAudioStream],
) -> None:
    speaker, played = await _speaker(stuck_streams)
    stuck_streams[0].call_back(2)
    stuck_streams[0].call_back(1, late_s=0.3)  # the device played 300 ms of nothing
    block = speaker.block_size
    assert [len(p) for p in played] == [block, block, int(0.3 * RATE), block]
    assert not played[2].any()
    stuck_streams[0].release()
    await speaker.aclose()


async def test_blocks_on_time_or_jittering_by_less_than_a_block_add_nothing(
    stuck_streams: list[StuckPortAudioStream],
) -> None:
    speaker, played = await _speaker(stuck_streams)
    stuck_streams[0].call_back(3)
    stuck_streams[0].call_back(1, late_s=0.015)  # under one 20 ms block: jitter, not an underrun
    stuck_streams[0].call_back(1, late_s=-0.012)  # a time stamp early
    assert [len(p) for p in played] == [speaker.block_size] * 5
    stuck_streams[0].release()
    await speaker.aclose()


async def test_a_jump_longer_than_any_underrun_adds_at_most_max_underrun(
    stuck_streams: list[StuckPortAudioStream],
) -> None:
    speaker, played = await _speaker(stuck_streams)
    stuck_streams[0].call_back(1)
    stuck_streams[0].call_back(1, late_s=3600.0)  # a clock glitch
    assert len(played[1]) == MAX_UNDERRUN_S * RATE
    stuck_streams[0].release()
    await speaker.aclose()
