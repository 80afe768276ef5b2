"""The audio pipeline between sound and the agent's events.

- :mod:`.input`: :class:`VoiceInput` — mono frames in; VAD, streaming ASR and
  the barge-in rule out, as ``UserSpeechStarted`` / ``TranscriptPartial`` /
  ``UserSpeechEnded`` / ``TranscriptFinal`` posted to the agent.
- :mod:`.output`: :class:`AudioSpeechOutput` — the agent's ``SpeechOutput``:
  streamed text → sentences → piper → a :class:`~.sinks.Sink`, with
  ``PlayoutStarted`` / ``PlayoutFinished`` and exact heard text on interrupt.
- :mod:`.sinks`: the ``Sink`` protocol and :class:`TimelineSink` (agent audio
  rendered onto the input's timeline, for the file transport).
- :mod:`.build`: builds the models from ``Config.voice``.

Heavy imports (onnxruntime, faster-whisper, piper) happen in :mod:`.build` only.
"""
