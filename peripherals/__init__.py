"""Speech peripherals: VAD, streaming ASR, TTS, audio in/out, resampling.

Nothing here knows about the agent, the FSM or the ledger. Each peripheral
kind is one small ``Protocol``; the adapters implement exactly that:

- ``peripherals.vad``: ``Vad`` / ``SileroVad`` (onnxruntime), ``VadSegmenter``
- ``peripherals.asr``: ``StreamingAsr`` / ``WhisperStreamingAsr`` (faster-whisper)
- ``peripherals.tts``: ``Tts`` / ``PiperTts`` (piper-tts)
- ``peripherals.audio_io``: ``AudioInput`` / ``AudioOutput`` (sounddevice), on
  ``peripherals.portaudio`` (PortAudio's start, devices, bounded open and close)
- ``peripherals.half_duplex``: ``HalfDuplexGate`` (self-hearing suppression)
- ``peripherals.aec``: ``EchoCanceller`` / ``WebRtcEchoCanceller`` (livekit), ``NullEchoCanceller``
- ``peripherals.resample``, ``peripherals.text_chunker``, ``peripherals.stable_prefix``,
  ``peripherals.wer``, ``peripherals.models``

Modules are imported one by one (``from peripherals.vad import SileroVad``);
this package imports nothing heavy on its own.
"""

from peripherals.audio import AudioChunk, ModelNotInstalledError, PeripheralError

__all__ = ["AudioChunk", "ModelNotInstalledError", "PeripheralError"]
