"""Configuration: frozen pydantic models, loaded once at start-up.

Sources, later wins: the embedded defaults (``configs/default.yaml``), a
user's YAML file, environment variables ``VOICE_AGENT__SECTION__FIELD=value``
(double underscores nest; values are parsed as YAML scalars), then the
conventional ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``OPENAI_MODEL``, then
command-line flags. A bad value fails at start-up with :class:`ConfigError`
naming the file, the field and the problem.

A YAML file's text values may refer to the environment: ``${NAME}`` (an
error naming the field when ``NAME`` is unset), ``${NAME:-fallback}``;
``$${`` is a literal ``${``. Every number must be finite (``.inf``/``.nan``
would disable a deadline or end the session with a traceback).
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ledger.redact import mask_url_secrets

from .local_llm.models import DEFAULT_MODEL

Mode = Literal["sync", "async", "speculative"]

ENV_PREFIX = "VOICE_AGENT__"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and the problem."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class LlmConfig(_Frozen):
    """An OpenAI-compatible endpoint. ``base_url=None`` starts the embedded local model."""

    base_url: str | None = None
    model: str = "local"
    api_key: SecretStr = SecretStr("none")
    timeout_s: float = Field(
        30.0,
        gt=0,
        description="deadline for the response's first output (text or a tool call), "
        "seconds from sending the request, retries included (not per read). Once output "
        "began, stall_timeout_s and max_tokens bound the response",
    )
    connect_timeout_s: float = Field(5.0, gt=0)
    first_token_timeout_s: float = Field(
        15.0,
        gt=0,
        description="no text, tool call or progress report within this many seconds of "
        "sending: retry or fail (empty keep-alive chunks do not count)",
    )
    stall_timeout_s: float = Field(
        10.0,
        gt=0,
        description="once output or progress began, none for this many seconds: the request fails",
    )
    progress: bool | None = Field(
        None,
        description="ask the endpoint to report progress while it works (return_progress: "
        "the embedded model and llama.cpp's server do), so a model slowed by a busy machine "
        "is told from a stalled one; None: only for the embedded model",
    )
    context_tokens: int | None = Field(
        16384,
        ge=256,
        description="the context window requests are fitted into, tokens (old turns and "
        "large tool results elided; the ledger keeps everything). A smaller window than the "
        "model's keeps long calls fast and cheap. None: no budget until the server's "
        "context-length error states one. The embedded model uses at most local_llm.ctx",
    )
    max_retries: int = Field(2, ge=0, le=10)
    retry_backoff_s: float = Field(0.25, ge=0, description="first retry delay; doubles each time")
    temperature: float = Field(0.3, ge=0, le=2)
    max_tokens: int = Field(300, gt=0)
    parallel_tool_calls: bool = True
    message_names: bool = Field(
        True,
        description="the endpoint takes OpenAI's optional `name` on messages, which marks "
        "the engine's own words (ledger.render.ENGINE_SPEAKER) apart from the model's. "
        "False for one that rejects the key (Mistral's API did): the mark is left out, the "
        "engine's words stay messages of their own",
    )
    prewarm: bool | None = Field(
        None, description="cache the prompt prefix at start-up; None: only for the embedded model"
    )
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {v!r})")
        return v.rstrip("/")


class LocalLlmConfig(_Frozen):
    """The embedded local model served when ``llm.base_url`` is not set."""

    model: str = DEFAULT_MODEL  # the registry's default (one name: local_llm.models)
    threads: int = Field(2, ge=1, le=64)
    ctx: int = Field(
        4096, ge=512, description="context window, tokens (requests are fitted into it)"
    )
    startup_timeout_s: float = Field(180.0, gt=0)


class ToolsConfig(_Frozen):
    """Where tools come from: ``module:attribute`` references to a ToolRegistry or a list."""

    modules: tuple[str, ...] = ("voice_agent.demo_tools:registry",)
    default_timeout_s: float = Field(10.0, gt=0)


class SpeculationConfig(_Frozen):
    """When forks open on partial transcripts (``mode: speculative``) and what they may spend."""

    min_new_words: int = Field(
        2, ge=1, description="new stable words since the last fork before another may open"
    )
    # A fork costs an LLM request; on 2 cores it also competes with the ASR for CPU.
    min_interval_s: float = Field(
        0.6, ge=0, description="at least this long between two forks of one turn, seconds"
    )
    callworthy_only: bool = Field(
        True,
        description="open a fork only when the new words hold something a call could use "
        "(a number or a name)",
    )
    max_forks_per_turn: int = Field(4, ge=0)
    max_fork_tokens_per_turn: int = Field(
        600, ge=0, description="LLM completion tokens all forks of a turn may generate"
    )
    max_tool_seconds_per_turn: float = Field(
        30.0, ge=0, description="running time speculative calls of a turn may spend, seconds"
    )
    drop_covered_preamble: bool = Field(
        True,
        description="hold the answer's leading text (a filler) while speculative results are "
        "in; drop it when every call the answer makes adopts a finished result",
    )
    covered_ack: str = Field(
        "Okay.",
        description="said the moment the answer's held leading text begins (the caller hears "
        "something as early as without the hold); it covers the follow-up that speaks the "
        "answer when the held text is dropped (keep it shorter than a follow-up's first "
        "sentence takes to arrive); empty: say nothing",
    )
    # Bounded so a long preamble is never held back for long: the caller hears it this late.
    preamble_hold_s: float = Field(
        0.8, ge=0, description="longest the leading text is held back, seconds"
    )
    keep_superseded_calls: bool = Field(
        True,
        description="a newer fork keeps the older forks' running calls for matching until the "
        "turn ends (false: cancel them at once)",
    )
    # A fork's LLM request served on this machine takes the cores the ASR decodes on (a
    # 1.5B model at 2 threads takes all of a 2-core box while it generates): partials come
    # late and the final decode, which the caller waits on, slows down.
    fork_llm: Literal["auto", "local", "remote"] = Field(
        "auto",
        description="where a fork's LLM request runs: local (on this machine's cores, "
        "competing with the ASR) or remote; auto: local when the LLM endpoint is on a "
        "loopback address (the embedded model)",
    )
    max_cpu_busy: float = Field(
        0.8,
        ge=0,
        le=1,
        description="local fork LLM: no partial fork opens while the machine's CPU is busier "
        "than this share (0..1, all cores) over the last quarter second; 1: never held back",
    )
    local_max_forks_per_turn: int = Field(
        2, ge=0, description="local fork LLM: at most this many partial forks per turn"
    )


class CallConfig(_Frozen):
    """A telephone call's rules: keypad entries, silence, the call's length, confirmed writes.

    The defaults leave an assistant alone (no idle prompts, no time limit); the
    phone profile (``configs/customer_service_phone.yaml``) turns them on.
    """

    dtmf_inter_digit_timeout_s: float = Field(
        3.0, gt=0, description="a keypad entry ends after this long without a key (or at '#')"
    )
    idle_prompt_after_s: float | None = Field(
        None,
        gt=0,
        description="silence (seconds) with nothing pending before asking whether the caller "
        "is still there; null: never",
    )
    idle_end_after_s: float = Field(
        8.0, gt=0, description="more silence after that question before ending the call politely"
    )
    idle_prompt: str = "Are you still there?"
    idle_goodbye: str = "I haven't heard anything, so I'll end the call now. Thanks for calling."
    max_call_s: float | None = Field(None, gt=0, description="longest call, seconds; null: none")
    max_call_warning_s: float = Field(
        60.0, ge=0, description="warn the caller this long before the limit, seconds"
    )
    max_call_warning: str = "Just so you know, we'll need to wrap up in about a minute."
    max_call_goodbye: str = "We've reached the time limit for this call. Thank you, goodbye."
    goodbye: str = "Thanks for calling. Goodbye."
    transfer_phrase: str = "I'm transferring you now. Please hold."
    transfer_failed: str = "Sorry, I couldn't transfer you just now. Can I help with anything else?"
    confirmed_phrase: str = "Okay, doing that now."
    confirm_writes: bool = Field(
        False,
        description="every write tool needs the caller's explicit yes (or keypad 1) before it "
        "runs, not only those declared confirm=True",
    )


class AgentConfig(_Frozen):
    """How the agent behaves in a conversation."""

    mode: Mode = "async"
    system_prompt: str | None = Field(
        None, description="inline system prompt; overrides prompt_file when set"
    )
    prompt_file: str = "customer_service.md"
    persona: str = "Alex"
    company: str = "Acme"
    hold_after_s: float = Field(
        0.6,
        gt=0,
        description="silence (seconds) with tool futures pending before the agent says a hold phrase",
    )
    max_hold_phrases: int = Field(3, ge=0, description="per user turn")
    max_followups: int = Field(
        8,
        ge=1,
        description="the loop guard: tool rounds per user turn. A follow-up that reports "
        "outcomes of calls made by a follow-up is one round deeper; outcomes of one round "
        "(however many) are not extra rounds",
    )
    loop_guard_message: str = (
        "I'm sorry, this is taking more steps than I can manage in one go. "
        "Shall I keep going, or would you like to try something simpler?"
    )
    llm_hold_after_s: float = Field(
        1.5,
        gt=0,
        description="the LLM has produced nothing (no text, no tool call) for this many "
        "seconds: say a hold phrase (the caller never waits in silence ~2 s)",
    )
    llm_deadline_s: float = Field(
        8.0,
        gt=0,
        description="the LLM has shown no sign of life (no text, tool call or progress "
        "report) for this many seconds: stop it, apologise and offer a way forward (the "
        "session goes on)",
    )
    llm_patience_s: float = Field(
        30.0,
        gt=0,
        description="the LLM shows signs of life (tokens, progress reports) but has said "
        "nothing speakable (a sentence, a call) for this many seconds: stop it and apologise. "
        "A model slowed by a busy machine keeps the line with hold phrases until then",
    )
    llm_holds_before_long_wait: int = Field(
        3,
        ge=0,
        description="hold phrases said every 2 s in one silence of the LLM before the wait "
        "counts as long: then llm_long_wait_phrase once per caller turn, and later hold phrases "
        "further apart (the gap doubles up to llm_hold_gap_max_s), never 'Almost there.' "
        "every 2 s for a minute. The default equals the holds before a dead model's 8 s "
        "deadline, so only a model that works on is told about",
    )
    llm_long_wait_phrase: str = Field(
        "Sorry, this is taking a little longer than usual.",
        min_length=1,
        description="said once per caller turn when the LLM's silence outlasts the short holds "
        "(llm_holds_before_long_wait)",
    )
    llm_hold_gap_max_s: float = Field(
        8.0,
        gt=0,
        description="after the long-wait phrase, hold phrases come at doubling gaps "
        "(4 s, 8 s, ...) up to this many seconds",
    )
    preemptive_generation: bool = Field(
        True,
        description="start the LLM when the user pauses (early transcript); keep it if the turn ends there",
    )
    speculation: SpeculationConfig = Field(default_factory=lambda: SpeculationConfig())
    call: CallConfig = Field(default_factory=lambda: CallConfig())
    apology: str = "Sorry, I'm having trouble right now. Could you say that again?"
    unheard_phrase: str = Field(
        "Sorry, I didn't catch that. Could you say it again?",
        min_length=1,
        description="said when the caller spoke but the speech recognition made out no words "
        "(a cough or a click gets no reply)",
    )
    cut_off_phrase: str = Field(
        "Sorry, I had to stop there. Shall I go on?",
        description="said when an answer was cut at llm.max_tokens in mid-sentence (the "
        "server's finish_reason 'length' or the client's own cap), so the caller is not "
        "left with half a sentence",
    )
    greeting: str | None = None
    hold_phrases: tuple[str, ...] = ("One moment.", "Still checking, one moment.", "Almost there.")


class LedgerConfig(_Frozen):
    """Where sessions are persisted (JSONL, one file per session)."""

    directory: str = "sessions"
    persist: bool = True
    record_audio: bool = Field(
        False,
        description="also write <session>.wav: caller and agent as two channels (opt-in: "
        "spoken card numbers are in a recording in the clear)",
    )


class TurnConfig(_Frozen):
    """When the caller's turn ends: the turn model, the transcript's cues, the silence.

    ``detection: model`` scores each pause with Smart Turn v3.2 once it has
    lasted ``candidate_silence_ms`` and ends the turn after the silence its
    decision asks for (all in ms of silence from the pause's start);
    ``detection: vad`` is the plain rule: ``voice.vad_min_silence_ms``, extended by
    ``voice.unfinished_extra_silence_ms`` when the early transcript looks unfinished.
    Defaults measured with bench/voice_latency.py (docs/results.md).
    """

    detection: Literal["model", "vad"] = "model"
    model: str = Field("smart-turn-v3.2", description="the turn model, or a path to an ONNX file")
    candidate_silence_ms: int = Field(200, ge=32, le=2000)
    done_probability: float = Field(0.5, ge=0, le=1)
    incomplete_probability: float = Field(0.2, ge=0, le=1)
    done_silence_ms: int = Field(200, ge=32, le=5000)
    done_statement_silence_ms: int = Field(
        400,
        ge=32,
        le=5000,
        description="a 'done' that is not a whole question ('...?') waits this long: comma "
        "pauses inside statements sound finished to the model (docs/turn_taking.md)",
    )
    uncertain_silence_ms: int = Field(500, ge=32, le=5000)
    incomplete_silence_ms: int = Field(1200, ge=32, le=5000)
    unfinished_text_silence_ms: int = Field(1000, ge=32, le=5000)
    number_silence_ms: int = Field(1200, ge=32, le=5000)
    no_model_silence_ms: int = Field(500, ge=32, le=5000)
    max_silence_ms: int = Field(1500, ge=100, le=5000)
    decision: Literal["graded", "bands"] = Field(
        "graded",
        description="graded: the model's score, the transcript and the pitch add up to one "
        "wait; bands: session 4's rule (the score picks a band, the transcript adjusts it)",
    )
    # The graded decision (docs/turn_taking.md): evidence in log-odds units of "done".
    model_weight: float = Field(0.3, ge=0, le=5, description="weight of the model's logit")
    question_evidence: float = Field(3.0, ge=-10, le=10, description="a whole question '...?'")
    question_form_evidence: float = Field(
        1.5, ge=-10, le=10, description="built as a question, no '?' (8 kHz Whisper)"
    )
    statement_evidence: float = Field(
        2.0, ge=-10, le=10, description="a full stop after a word that can end a sentence"
    )
    rising_evidence: float = Field(1.0, ge=-10, le=10, description="a '?' on a statement")
    unpunctuated_evidence: float = Field(
        -1.0, ge=-10, le=10, description="a transcript with no end punctuation"
    )
    complete_evidence: float = Field(
        0.0,
        ge=-10,
        le=10,
        description="no end punctuation or a trailing '...', but the words are a whole clause",
    )
    unfinished_evidence: float = Field(
        -2.0, ge=-10, le=10, description="cut mid-clause, a floor-holding phrase, digits read"
    )
    rise_slope: float = Field(
        12.0, ge=0, le=200, description="pitch rise (semitones/s, last 200 ms of voicing)"
    )
    rise_evidence: float = Field(-1.0, ge=-10, le=10, description="a statement that rises")
    fall_slope: float = Field(
        -8.0, ge=-200, le=0, description="pitch fall (semitones/s, last 200 ms of voicing)"
    )
    fall_evidence: float = Field(0.5, ge=-10, le=10, description="a statement that falls")
    confident_evidence: float = Field(
        2.5,
        gt=0,
        le=20,
        description="evidence that waits the done wait (its negative: the incomplete wait)",
    )
    neutral_silence_ms: int = Field(600, ge=32, le=5000, description="the wait at zero evidence")
    caller_pause_margin_ms: int | None = Field(
        150,
        ge=0,
        le=2000,
        description="a doubtful decision waits the caller's longest recent mid-turn pause "
        "plus this (null: no per-caller adaptation)",
    )
    caller_pause_below_evidence: float = Field(
        2.5, ge=-20, le=20, description="... a decision below this evidence is doubtful"
    )

    @model_validator(mode="after")
    def _ordered(self) -> TurnConfig:
        if self.incomplete_probability > self.done_probability:
            raise ValueError("incomplete_probability must not exceed done_probability")
        if self.max_silence_ms < self.candidate_silence_ms:
            raise ValueError("max_silence_ms must be at least candidate_silence_ms")
        if not self.done_silence_ms <= self.neutral_silence_ms <= self.incomplete_silence_ms:
            raise ValueError("need done_silence_ms <= neutral_silence_ms <= incomplete_silence_ms")
        return self


class BackchannelConfig(_Frozen):
    """Listener feedback ("mhm", "yeah", "right") while the agent talks is not an interruption.

    Speech over the agent pauses its voice at once; speech that lasts
    ``max_ms`` (or more) is an interruption whatever it says; shorter speech
    is one unless its transcript is only backchannel phrases, in which case it
    is recorded and the agent resumes where it paused.
    """

    enabled: bool = True
    max_ms: int = Field(
        900, ge=0, le=5000, description="speech over the agent this long (ms) always interrupts"
    )
    phrases: tuple[str, ...] | None = Field(
        None, description="lower-case phrases that are backchannels; None: the built-in list"
    )


class VoiceConfig(_Frozen):
    """Audio peripherals: VAD, ASR, TTS, devices."""

    sample_rate: int = Field(
        16000, ge=8000, le=48000, description="transport sample rate, Hz (8000-48000)"
    )
    vad_min_silence_ms: int = Field(500, ge=100, le=3000)
    unfinished_extra_silence_ms: int = Field(
        700,
        ge=0,
        le=5000,
        description="more silence before ending a turn whose transcript looks unfinished ('Thank you,')",
    )
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    asr_model: str = "tiny.en"
    # Partial decodes: 1 leaves the other core to TTS and a local LLM while the caller
    # speaks; the end-of-turn decode has its own setting (asr_final_threads).
    asr_threads: int = Field(1, ge=1, le=16)
    asr_final_threads: int = Field(
        2,
        ge=1,
        le=16,
        description="threads of the end-of-turn decode, the one the caller waits on (nothing "
        "else decodes then); a second copy of the model (~75 MB for tiny.en) when it differs "
        "from asr_threads. 2: 0.74x the decode time of 1 on 2 cores (docs/turn_taking.md)",
    )
    asr_partial_interval_s: float = Field(1.0, ge=0.2)
    asr_window_s: float = Field(
        10.0,
        gt=0,
        le=30,
        description="Whisper encodes the utterance + 1 s, at least this many seconds (30: the "
        "stock window); 10 decodes a short turn in 0.3x the time at the same WER",
    )
    asr_window_pad: Literal["silence", "zeros"] = Field(
        "silence",
        description="what fills Whisper's window after the utterance: the log-mel of silence "
        "(as Whisper was trained) or zero features (faster-whisper's padding, the earlier "
        "default); silence: lower WER and fewer runaway decodes (docs/turn_taking.md)",
    )
    asr_tail_decode: bool = Field(
        True,
        description="start the end-of-turn decode as soon as the newest audio reads as "
        "silence (the VAD's look between its 32 ms frames), before the VAD pauses; dropped if "
        "the speech goes on (docs/turn_taking.md)",
    )
    asr_tail_quiet_below: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="the tail reads quiet (the end-of-turn decode starts) when the VAD's "
        "probability of the newest audio is below this; None: the VAD's end threshold "
        "(vad_threshold - 0.15). Higher starts sooner and voids more decodes (docs/turn_taking.md)",
    )
    tts_voice: str = "en_US-joe-medium"
    tts_prepare_held: bool = Field(
        True,
        description="synthesise the first words of a preemptive answer while it is held "
        "(the caller's pause has not become the end of the turn yet), so that adopted it is "
        "heard at once; costs one short synthesis when the caller goes on (docs/turn_taking.md)",
    )
    tts_phrase_cache: int = Field(
        32,
        ge=0,
        le=4096,
        description='first chunks of answers kept as audio ("Sure,", "Okay,"; up to 40 '
        "characters): an answer that opens as an earlier one did plays at once instead of "
        "waiting for piper (25-55 ms quiet); 0 turns it off (docs/latency.md)",
    )
    tts_speed: float = Field(1.0, gt=0.25, le=4)
    tts_threads: int = Field(
        1,
        ge=1,
        le=16,
        description="onnxruntime threads of piper's synthesis; 1 leaves the other core to the "
        "ASR and a local LLM (at load 17 two threads took 1.13x the time of one on short first "
        "chunks; on a quiet machine the answer's first chunk may gain, docs/turn_taking.md)",
    )
    tts_variability: float = Field(
        1.0,
        ge=0,
        le=2,
        description="the voice's random variation (1 = as trained; 0 = the same audio for the same text every time)",
    )
    input_device: str | None = None
    output_device: str | None = None
    barge_in: bool = True
    min_barge_in_ms: int = Field(
        200,
        ge=0,
        le=2000,
        description="speech must last this long (ms) to interrupt the agent: coughs and clicks do not",
    )
    # What pauses the agent's voice at a possible barge-in: "level" (default) the audio
    # level's onset or the VAD's first speech frame, whichever is first (an unvoiced "s"
    # scores low in the VAD for ~100 ms: interruption stop p95 151 -> 33 ms, see
    # docs/turn_taking.md); "vad" the VAD's frame only, for a microphone whose residual
    # echo of the agent is loud enough to read as an onset (each costs a <= 250 ms gap).
    barge_in_onset: Literal["level", "vad"] = "level"
    # How the agent avoids hearing itself on a speaker: "aec" cancels its voice from the
    # microphone (WebRTC, via the livekit package) so the caller can talk over it freely;
    # "half_duplex" mutes the microphone while it speaks unless the caller is louder.
    echo: Literal["aec", "half_duplex", "none"] = "aec"
    # Make a local transport (console, recordings) sound like a phone call: the caller's
    # audio and the agent's voice go through this G.711 codec (phone transports have it
    # on the wire already).
    line_codec: Literal["none", "mulaw", "alaw"] = "none"
    turn: TurnConfig = Field(default_factory=lambda: TurnConfig())
    backchannel: BackchannelConfig = Field(default_factory=lambda: BackchannelConfig())


class WorkerConfig(_Frozen):
    """A worker process serving several calls with one set of models."""

    max_calls: int = Field(
        2,
        ge=1,
        le=256,
        # Measured on 2 cores, quiet (docs/results.md): 2 calls with a remote LLM keep the
        # voice-to-voice p95 within +20 % of one call's (3: +41 %); with the embedded model 1.
        description="concurrent calls; more would slow every call down (measured: docs/results.md)",
    )
    max_waiting: int = Field(
        0, ge=0, le=1000, description="calls queued for a free slot beyond max_calls (0: refuse)"
    )
    wait_timeout_s: float = Field(
        20.0,
        gt=0,
        description="the longest a queued call waits for a slot, seconds; then it hears "
        "queue_apology and the call ends",
    )
    hold_message: str = Field(
        "Thank you for calling. All our agents are busy; please stay on the line and "
        "you will be answered shortly.",
        min_length=1,
        description="played to a queued caller (in the call's own rate and codec)",
    )
    hold_interval_s: float = Field(
        8.0,
        gt=0,
        le=600,
        description="the hold message is repeated every this many seconds (start to start) "
        "while the call waits",
    )
    queue_apology: str = Field(
        "We are sorry, all our agents are still busy. Please call again later. Goodbye.",
        min_length=1,
        description="what a queued caller hears when wait_timeout_s has passed, before the "
        "call ends",
    )


class PhoneConfig(_Frozen):
    """``voice-agent phone serve``: a telephony provider's media stream over WebSocket."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    path: str = Field("/media", pattern=r"^/")
    provider: Literal["twilio", "telnyx", "vonage"] = "twilio"
    public_url: str | None = Field(
        None,
        description="wss:// URL the provider connects to (behind the TLS reverse proxy); "
        "used in the TwiML the server hands out",
    )
    api_base_url: str = Field(
        "https://api.twilio.com",
        description="the provider's REST API (transfer, hang-up, DTMF); the Twilio default "
        "means the provider's own (api.telnyx.com, api.nexmo.com) for the others",
    )
    account_sid: str | None = None
    auth_token: SecretStr | None = None


class Config(_Frozen):
    """The whole configuration."""

    llm: LlmConfig = Field(default_factory=lambda: LlmConfig())
    local_llm: LocalLlmConfig = Field(default_factory=lambda: LocalLlmConfig())
    agent: AgentConfig = Field(default_factory=lambda: AgentConfig())
    tools: ToolsConfig = Field(default_factory=lambda: ToolsConfig())
    ledger: LedgerConfig = Field(default_factory=lambda: LedgerConfig())
    voice: VoiceConfig = Field(default_factory=lambda: VoiceConfig())
    worker: WorkerConfig = Field(default_factory=lambda: WorkerConfig())
    phone: PhoneConfig = Field(default_factory=lambda: PhoneConfig())


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, nested mappings key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def yaml_problem(exc: yaml.YAMLError, origin: str) -> str:
    """PyYAML's error as one line naming the file, line and column (hostile9).

    PyYAML's own text spans six lines, calls the file ``"<unicode string>"`` and
    points at it with a caret: ``bad.yaml: line 3, column 4: not valid YAML:
    expected ',' or ']', but got ':' (while parsing a flow sequence at line 2,
    column 12)``."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{origin}: line {mark.line + 1}, column {mark.column + 1}" if mark else origin
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        problem += f" ({context})"
    return f"{where}: not valid YAML: {problem}"


def load_yaml_file(path: str | Path) -> Any:
    """The YAML document in ``path``: a file that cannot be read, is not UTF-8 or not
    valid YAML is a :class:`ConfigError` of one line naming the file (and line)."""
    path = Path(path)
    text = _read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(exc, str(path))) from None


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(exc, origin)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping, got {type(data).__name__}")
    return data


_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _interpolate(data: Any, environ: Mapping[str, str], origin: str, where: str = "") -> Any:
    """``data`` with ``${NAME}`` / ``${NAME:-fallback}`` in its strings taken from ``environ``.

    An unset name without a fallback, or a malformed reference, is a :class:`ConfigError`
    naming the file, the field and the variable (never the value of anything).
    """
    if isinstance(data, dict):
        return {
            k: _interpolate(v, environ, origin, f"{where}.{k}" if where else str(k))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_interpolate(v, environ, origin, f"{where}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):  # $${...}: a literal ${...}
            return match.group(0)[1:]
        name, sep, fallback = match.group(2).partition(":-")
        if not _ENV_NAME.match(name):
            raise ConfigError(
                f"{origin}: {where}: '${{{match.group(2)}}}' is not a valid reference "
                "(write ${NAME} or ${NAME:-fallback}; $${ for a literal ${)"
            )
        value = environ.get(name)
        if value is None or (sep and value == ""):
            if sep:
                return fallback
            raise ConfigError(
                f"{origin}: {where}: the environment variable {name} is not set "
                f"(set it, or write ${{{name}:-fallback}} in the file)"
            )
        return value

    return _REFERENCE.sub(substitute, data)


def embedded_defaults_text() -> str:
    """The text of the embedded ``configs/default.yaml``."""
    return _data_file("configs", "default.yaml").read_text(encoding="utf-8")


def _data_file(kind: str, name: str) -> Path:
    """A file of the top-level ``configs/`` or ``prompts/``, shipped as ``voice_agent.data.<kind>``."""
    try:
        packaged = resources.files(f"voice_agent.data.{kind}").joinpath(name)
        if packaged.is_file():
            return Path(str(packaged))
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    return Path(__file__).resolve().parent.parent / kind / name  # a source checkout


def prompt_path(name: str) -> Path:
    """Resolve a prompt file: an existing path, else one of the shipped ``prompts/``."""
    p = Path(name)
    return p if p.is_file() else _data_file("prompts", name)


def config_path(name: str) -> Path:
    """Resolve a config file: an existing path, else one of the shipped ``configs/``."""
    p = Path(name)
    if p.is_file():
        return p
    shipped = _data_file("configs", name if name.endswith(".yaml") else f"{name}.yaml")
    if shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {name}")


def _read_text(path: Path) -> str:
    """A config file's text; a file that is not UTF-8 (or not readable) is a ConfigError."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); "
            "save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _is_text_field(path: list[str]) -> bool:
    """The config field at ``path`` holds text (str or SecretStr): its env value is kept raw."""
    model: Any = Config
    for part in path:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        model = fields[part].annotation
    origin = typing.get_origin(model)
    if origin in (tuple, list, dict, set, Literal):
        return False
    args = typing.get_args(model) if origin is not None else (model,)  # str | None
    return any(arg in (str, SecretStr) for arg in args)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        if _is_text_field(path):
            value: Any = raw  # an all-digit API key stays text (YAML would make 0123 the number 83)
        else:
            try:
                value = yaml.safe_load(raw) if raw != "" else None
            except yaml.YAMLError:
                value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    conventional = {
        "OPENAI_BASE_URL": ("llm", "base_url"),
        "OPENAI_API_KEY": ("llm", "api_key"),
        "OPENAI_MODEL": ("llm", "model"),
        "TWILIO_ACCOUNT_SID": ("phone", "account_sid"),
        "TWILIO_AUTH_TOKEN": ("phone", "auth_token"),
    }
    for env, (section, field) in conventional.items():
        if environ.get(env):
            out.setdefault(section, {}).setdefault(field, environ[env])
    return out


def _describe(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        given = err.get("input")
        shown = "" if isinstance(given, dict) or "(got " in err["msg"] else f" (got {given!r})"
        if _SECRET_FIELD.search(where):
            shown = ""  # never echo a secret
        # a URL's user:password@ or ?api-key= is a secret too, in the value and in the message
        lines.append(mask_url_secrets(f"  {where}: {err['msg']}{shown}"))
    return "\n".join(lines)


# Configuration fields whose values are secrets (never echoed in an error).
_SECRET_FIELD = re.compile(r"api_key|auth_token|secret|password|passwd|token|credential", re.I)


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load the configuration (defaults ← ``path`` ← environment ← ``overrides``).

    Raises :class:`ConfigError` with every invalid field named.
    """
    environ = os.environ if environ is None else environ
    origins = ["embedded defaults"]
    data = _read_yaml(embedded_defaults_text(), "configs/default.yaml")
    if path is not None:
        p = config_path(str(path))
        data = deep_merge(data, _interpolate(_read_yaml(_read_text(p), str(p)), environ, str(p)))
        origins.append(str(p))
    env = _env_overrides(environ)
    if env:
        data = deep_merge(data, env)
        origins.append("environment")
    if overrides:
        data = deep_merge(data, overrides)
        origins.append("command line")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, " + ".join(origins))) from None


def render_system_prompt(agent: AgentConfig) -> str:
    """The system prompt: inline text, or the prompt file with ``{persona}``/``{company}`` filled."""
    if agent.system_prompt:
        return agent.system_prompt
    path = prompt_path(agent.prompt_file)
    if not path.is_file():
        raise ConfigError(f"agent.prompt_file: file not found: {agent.prompt_file}")
    try:
        text = _read_text(path)
    except ConfigError as exc:
        raise ConfigError(f"agent.prompt_file: {exc}") from None
    return text.replace("{persona}", agent.persona).replace("{company}", agent.company)
