"""Where the end-of-turn time goes: Whisper's encoder and decoder, piper's first chunk.

    .venv/bin/python bench/asr_profile.py [--voices default] [--kinds question] [--rates 16000,8000]
                                          [--repeats 3] [--json out.json]

Every caller turn of ``bench/callers.py`` (one speed per voice), with 0.3 s of
silence before (the voice input's preroll) and 50 ms after (the tail decode starts
~50 ms after the end of speech), at 16 kHz and through the 8 kHz μ-law phone path,
is decoded as the product's end-of-turn decode does it
(``WhisperStreamingAsr._decode_blocking`` on the end-of-turn model copy, with the
log-mel streamed as the audio arrived); its ``DecodeStages`` split the time into the
log-mel window, the encoder and the decoder. On the same encoder output, interleaved
(ratios survive the machine's load; absolute times do not):

- ``generate_no_nsp``: the decoder without the no-speech probability (the silence rule);
- ``generate_first_step``: the decoder stopped after one token (its fixed cost: the
  prompt, the cross-attention keys/values, the first step);
- ``generate_prefix``: the decoder with the committed words of the streamed partial
  transcripts (1 s cadence, LocalAgreement-2, the partial model) forced as a prefix, so
  only the rest is generated; its WER next to the plain decode's;
- ``encode_1_thread``: the encoder on the partials' 1-thread model copy.

Then piper's first chunks of common openings, 1 and 2 threads (``voice.tts_threads``),
and a phrase-cache hit. Reports the median of each stage (ms) and each variant's
ratio to its default, per rate.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import callers as cl  # noqa: E402
from turn_latency import normalise  # noqa: E402

from peripherals.asr import (  # noqa: E402
    ASR_RATE,
    MEL_FRAMES_PER_S,
    WINDOW_TAIL_S,
    WhisperStreamingAsr,
    _max_length,
    _Window,
    max_tokens,
    window_features,
)
from peripherals.log_mel import LogMelStream  # noqa: E402
from peripherals.resample import resample  # noqa: E402
from peripherals.stable_prefix import StablePrefix  # noqa: E402
from peripherals.wer import word_error_rate  # noqa: E402

PREROLL_S = 0.3  # the voice input's preroll before the speech (s)
TAIL_S = 0.05  # the end-of-turn decode starts ~50 ms after the end of speech (s)
PARTIAL_EVERY_S = 1.0  # the partial decodes' cadence (voice.asr_partial_interval_s)
OPENINGS = ("Sure,", "Okay,", "Of course,", "Let me check that for you.")


def _ms(xs: list[float]) -> float:
    return round(st.median(xs) * 1000, 1)


def _generate(window: _Window, model: Any, encoded: Any, prompt: list[int], **kw: Any) -> Any:
    options = {
        "beam_size": 1,
        "patience": 1.0,
        "length_penalty": 1.0,
        "return_scores": True,
        "return_no_speech_prob": True,
        "suppress_blank": True,
        "suppress_tokens": window._suppress,
    }
    options.update(kw)
    return model.model.generate(encoded, [prompt], **options)[0]


def committed_words(asr: WhisperStreamingAsr, audio: np.ndarray) -> str:
    """The stable prefix the streamed partials had committed when the speech ended."""
    policy = StablePrefix()
    step = int(PARTIAL_EVERY_S * ASR_RATE)
    for end in range(step, len(audio), step):
        decoded = asr._decode_blocking(audio[:end], 1, final=False)
        policy.update(decoded.text.split())
    return " ".join(policy.committed)


def profile_asr(items: list[cl.Item], rates: list[int], repeats: int) -> dict[str, Any]:
    asr = WhisperStreamingAsr(cpu_threads=1, final_cpu_threads=2)
    model, partial_model = asr._final_model, asr._model
    window = _Window(model, "en", None, "silence")
    asr._decode_blocking(np.zeros(ASR_RATE, np.float32) + 0.01, 1)  # warm-up
    out: dict[str, Any] = {}
    for rate in rates:
        t: dict[str, list[float]] = {
            k: []
            for k in (
                "decode",
                "features",
                "encode",
                "generate",
                "generate_no_nsp",
                "generate_first_step",
                "generate_prefix",
                "encode_1_thread",
                "tokens",
                "prefix_tokens",
            )
        }
        wer_plain: list[float] = []
        wer_prefix: list[float] = []
        for item in items:
            x, _ = cl.render(item, ASR_RATE)
            if rate == 8000:
                x = resample(cl.phone(x, ASR_RATE), 8000, ASR_RATE)
            audio = np.concatenate(
                [
                    np.zeros(int(PREROLL_S * ASR_RATE), np.float32),
                    x,
                    np.zeros(int(TAIL_S * ASR_RATE), np.float32),
                ]
            )
            mel = LogMelStream(model.feature_extractor.mel_filters)
            for k in range(0, len(audio), 512):  # the VAD's 32 ms frames
                mel.push(audio[k : k + 512])
            audio_s = len(audio) / ASR_RATE
            frames = int(np.ceil(max(10.0, audio_s + WINDOW_TAIL_S) * MEL_FRAMES_PER_S))
            features = window_features(model.feature_extractor, audio, frames)
            limit = _max_length(max_tokens(audio_s), len(window._prompt), model.max_length)
            committed = committed_words(asr, audio)
            prefix = window._tokenizer.encode(" " + committed) if committed else []
            ref = normalise(item.text)
            for rep in range(repeats):
                decoded = asr._decode_blocking(audio, 1, final=True, cached=mel.snapshot())
                stages = decoded.stages
                if stages is None:
                    continue
                t["decode"].append(decoded.decode_s)
                t["features"].append(stages.features_s)
                t["encode"].append(stages.encode_s)
                t["generate"].append(stages.generate_s)
                t["tokens"].append(stages.tokens)
                encoded = model.encode(features)
                s = time.perf_counter()
                partial_model.encode(features)
                t["encode_1_thread"].append(time.perf_counter() - s)
                s = time.perf_counter()
                _generate(window, model, encoded, window._prompt, max_length=limit)
                generate_again = time.perf_counter() - s
                s = time.perf_counter()
                _generate(
                    window,
                    model,
                    encoded,
                    window._prompt,
                    max_length=limit,
                    return_no_speech_prob=False,
                )
                t["generate_no_nsp"].append((time.perf_counter() - s) / generate_again)
                s = time.perf_counter()
                _generate(
                    window, model, encoded, window._prompt, max_length=len(window._prompt) + 2
                )
                t["generate_first_step"].append((time.perf_counter() - s) / generate_again)
                s = time.perf_counter()
                result = _generate(
                    window,
                    model,
                    encoded,
                    window._prompt + prefix,
                    max_length=limit + len(prefix),
                )
                t["generate_prefix"].append((time.perf_counter() - s) / generate_again)
                t["prefix_tokens"].append(len(prefix))
                if rep == 0:
                    # CTranslate2 returns the forced prefix with the generated tokens
                    # (include_prompt_in_result)
                    forced = window._tokenizer.decode(result.sequences_ids[0])
                    wer_plain.append(word_error_rate(ref, normalise(decoded.text)))
                    wer_prefix.append(word_error_rate(ref, normalise(forced)))
        encode_ratio = [a / b for a, b in zip(t["encode_1_thread"], t["encode"], strict=True)]
        out[str(rate)] = {
            "n": len(wer_plain),
            "median_ms": {k: _ms(t[k]) for k in ("decode", "features", "encode", "generate")},
            "median_tokens": st.median(t["tokens"]),
            "median_prefix_tokens": st.median(t["prefix_tokens"]),
            "ratio_to_generate": {
                k: round(st.median(t[k]), 3)
                for k in ("generate_no_nsp", "generate_first_step", "generate_prefix")
            },
            "encode_1_over_2_threads": round(st.median(encode_ratio), 3),
            "wer_plain": round(float(np.mean(wer_plain)), 3),
            "wer_prefix": round(float(np.mean(wer_prefix)), 3),
        }
        print(f"{rate}: {out[str(rate)]}", file=sys.stderr)
    return out


def profile_tts(repeats: int) -> dict[str, Any]:
    from piper import SynthesisConfig

    from peripherals.tts import PhraseCache, lead_in_trimmed, load_piper_voice

    out: dict[str, Any] = {}
    voices = {threads: load_piper_voice(None, threads) for threads in (1, 2)}
    config = SynthesisConfig(volume=0.8)
    for voice in voices.values():
        for _ in voice.synthesize("Hello.", syn_config=config):
            pass
    cache = PhraseCache()
    for text in OPENINGS:
        times: dict[int, list[float]] = {1: [], 2: []}
        hits: list[float] = []
        for _ in range(repeats):
            for threads, voice in voices.items():
                s = time.perf_counter()
                chunk = next(iter(voice.synthesize(text, syn_config=config)))
                audio = np.asarray(chunk.audio_float_array, dtype=np.float32)
                trimmed = lead_in_trimmed(resample(audio, int(chunk.sample_rate), 16000), 16000)
                times[threads].append(time.perf_counter() - s)
            cache.put(text, 16000, trimmed)
            s = time.perf_counter()
            cache.get(text, 16000)
            hits.append(time.perf_counter() - s)
        out[text] = {
            "synth_ms_1_thread": _ms(times[1]),
            "synth_ms_2_threads": _ms(times[2]),
            "two_over_one": round(st.median(times[2]) / st.median(times[1]), 3),
            "cache_hit_ms": round(st.median(hits) * 1000, 3),
        }
        print(f"{text!r}: {out[text]}", file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voices", choices=("default", "held-out"), default="default")
    parser.add_argument("--kinds", default="question")
    parser.add_argument("--rates", default="16000,8000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-tts", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not cl.espeak_available():
        print("bench: espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    voices = cl.HELD_OUT_VOICES if args.voices == "held-out" else cl.VOICES
    kinds = [k for k in args.kinds.split(",") if k]
    items = [
        it for it in cl.items_for(voices, speeds=cl.SPEEDS_WPM[:1]) if not kinds or it.kind in kinds
    ]
    report: dict[str, Any] = {
        "voices": voices,
        "kinds": kinds,
        "asr": profile_asr(items, [int(r) for r in args.rates.split(",")], args.repeats),
    }
    if not args.no_tts:
        report["tts_first_chunk"] = profile_tts(max(args.repeats, 5))
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
