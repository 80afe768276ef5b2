"""``voice-agent say TEXT --output FILE.wav``: a caller's question as a WAV file.

The agent's own TTS voice (piper) speaks `TEXT` into a mono 16-bit WAV at
``voice.sample_rate``, with a little silence before and after (a VAD needs
to hear the speech start and end). It gives the file transport
(``voice-agent run``) and the virtual-device recipe (docs/audio.md) an input
without a microphone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import Config

#: Silence around the speech, seconds: the VAD's pre-roll and its end-of-turn silence.
LEAD_SILENCE_S = 0.3
TAIL_SILENCE_S = 1.0


async def say_to_wav(config: Config, text: str, path: Path) -> float:
    """Synthesize `text` into `path`; returns the file's duration in seconds."""
    from .voice.build import build_tts
    from .voice.wavio import write_wav

    rate = config.voice.sample_rate
    tts = build_tts(config.voice, rate)
    try:
        pieces = [
            np.asarray(chunk.samples, dtype=np.float32) async for chunk in tts.synthesize(text)
        ]
    finally:
        await tts.aclose()
    if not pieces:
        raise ValueError(f"nothing to say in {text!r}")
    lead = np.zeros(int(LEAD_SILENCE_S * rate), dtype=np.float32)
    tail = np.zeros(int(TAIL_SILENCE_S * rate), dtype=np.float32)
    audio = np.concatenate([lead, *pieces, tail])
    write_wav(path, audio, rate)
    return len(audio) / rate
