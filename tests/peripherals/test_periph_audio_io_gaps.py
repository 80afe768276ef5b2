"""Gaps in a device's stream on a starved machine, which PortAudio calls back late: an
echo canceller's far end (what the speaker played) and near end (what the microphone
captured) must stay in step, or every gap shifts its alignment for good.

- An output underrun: the speaker ran dry and played silence; ``on_played`` gets it.
- An input overflow: the microphone's samples were dropped while the speaker played
  on; ``process`` gets the stretch as silence (not queued for the reader).
"""

from __future__ import annotations

import numpy as np
import pytest
from portaudio_fakes import StuckPortAudioStream

from peripherals.aec import WebRtcEchoCanceller
from peripherals.audio_io import MAX_GAP_S, AudioDeviceError, AudioInput, AudioOutput

RATE = 16000
AGENT = "Your order has shipped and should arrive on Thursday. Is there anything else I can help you with today?"


async def _speaker(
    stuck_streams: list[StuckPortAudioStream],
) -> tuple[AudioOutput, list[np.ndarray]]:
    played: list[np.ndarray] = []
    speaker = AudioOutput("fake", sample_rate=RATE, on_played=played.append)
    await speaker.start()
    return speaker, played


async def _microphone(
    stuck_streams: list[StuckPortAudioStream],
) -> tuple[AudioInput, list[np.ndarray]]:
    processed: list[np.ndarray] = []

    def process(frame: np.ndarray) -> np.ndarray:
        processed.append(frame)
        return frame

    mic = AudioInput("fake", sample_rate=RATE, process=process)
    await mic.start()
    return mic, processed


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


async def test_a_jump_longer_than_any_underrun_adds_at_most_max_gap(
    stuck_streams: list[StuckPortAudioStream],
) -> None:
    speaker, played = await _speaker(stuck_streams)
    stuck_streams[0].call_back(1)
    stuck_streams[0].call_back(1, late_s=3600.0)  # a clock glitch
    assert len(played[1]) == MAX_GAP_S * RATE
    stuck_streams[0].release()
    await speaker.aclose()


async def test_the_samples_an_input_overflow_dropped_reach_process_as_silence_not_the_reader(
    stuck_streams: list[StuckPortAudioStream],
) -> None:
    mic, processed = await _microphone(stuck_streams)
    stuck_streams[0].call_back(2)
    stuck_streams[0].call_back(1, late_s=0.3)  # 300 ms of the microphone were dropped
    block = mic.frame_size
    assert [len(p) for p in processed] == [block, block, int(0.3 * RATE), block]
    assert not processed[2].any()
    captured = [(await mic.read()).samples for _ in range(3)]  # the silence: nobody captured it
    assert [len(c) for c in captured] == [block] * 3 and all((c == 0.1).all() for c in captured)
    with pytest.raises(AudioDeviceError, match="delivered no audio"):
        await mic.read()  # nothing else was queued
    stuck_streams[0].release()
    await mic.aclose()


async def test_input_blocks_jittering_by_less_than_a_block_add_nothing_and_glitches_are_capped(
    stuck_streams: list[StuckPortAudioStream],
) -> None:
    mic, processed = await _microphone(stuck_streams)
    stuck_streams[0].call_back(2)
    stuck_streams[0].call_back(1, late_s=0.015)  # jitter of the ADC time stamps
    stuck_streams[0].call_back(1, late_s=-0.012)
    assert [len(p) for p in processed] == [mic.frame_size] * 4
    stuck_streams[0].call_back(1, late_s=3600.0)  # a clock glitch
    assert len(processed[4]) == MAX_GAP_S * RATE
    stuck_streams[0].release()
    await mic.aclose()


async def test_input_blocks_stamped_late_but_not_flagged_add_nothing(
    stuck_streams: list[StuckPortAudioStream],
) -> None:
    # PulseAudio's ALSA plugin stamps blocks up to 28 ms late in a stream's first second
    # with nothing lost (and PortAudio flags nothing)
    mic, processed = await _microphone(stuck_streams)
    stuck_streams[0].call_back(2)
    stuck_streams[0].call_back(1, late_s=0.028, flagged=False)
    assert [len(p) for p in processed] == [mic.frame_size] * 3
    stuck_streams[0].release()
    await mic.aclose()


# The stretch of microphone audio dropped in the echo test (s), and how long after it the
# canceller's echo is measured (s): AEC3 adapts again after the loss.
DROPPED_S = 0.3
SETTLE_S = 0.5
# Echo the canceller removes after the drop (dB): 62.9 dB measured here with the gap passed
# on; a drop the canceller is not told of moves the echo ahead of its reference: 5.6 dB.
MIN_ERLE_DB = 20.0


async def test_the_echo_stays_cancelled_after_the_microphone_dropped_samples(
    stuck_streams: list[StuckPortAudioStream], speech_factory
) -> None:  # type: ignore[no-untyped-def]
    """The speaker plays the agent's sentence into a room (its echo reaches the microphone
    30 ms later at -6 dB) through a real WebRTC canceller; two seconds in, the microphone
    loses DROPPED_S of samples (an input overflow), while the speaker plays on."""
    far = speech_factory(AGENT, RATE, before_s=0.5, after_s=0.5).samples
    delay = int(0.03 * RATE)
    echo = np.concatenate([np.zeros(delay, np.float32), 0.5 * far[:-delay]])
    aec = WebRtcEchoCanceller(RATE)
    speaker = AudioOutput(
        "fake", sample_rate=RATE, buffer_s=len(far) / RATE + 1, on_played=aec.note_played
    )
    mic = AudioInput("fake", sample_rate=RATE, process=aec.process_mic)
    await speaker.start()
    await mic.start()
    played, captured = stuck_streams
    await speaker.write(far)
    block = mic.frame_size
    first_dropped = int(2.0 * RATE) // block
    after_drop = first_dropped + int(DROPPED_S * RATE) // block
    cleaned, heard = [], []
    for k in range(len(far) // block):
        played.call_back(1)  # the speaker plays on
        if first_dropped <= k < after_drop:
            continue  # the microphone's samples are dropped
        late_s = DROPPED_S if k == after_drop else 0.0
        captured.call_back(1, late_s=late_s, audio=echo[k * block : (k + 1) * block])
        samples = (await mic.read()).samples
        if k >= after_drop + int(SETTLE_S * RATE) // block:
            cleaned.append(samples)
            heard.append(echo[k * block : (k + 1) * block])
    for stream in stuck_streams:
        stream.release()
    await mic.aclose()
    await speaker.aclose()
    aec.close()
    erle = _dbfs(np.concatenate(heard)) - _dbfs(np.concatenate(cleaned))
    print(f"ERLE {erle:.1f} dB after the drop")
    assert erle > MIN_ERLE_DB, f"echo reduced by only {erle:.1f} dB after the drop"


def _dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return 10 * float(np.log10(np.mean(x * x) + 1e-20))
