"""What the speech grammar costs per request, the two old builders against the one new one.

Everything here is on the path to the first audio: a reply builds its speech grammar
per request (`grammar.speech_grammar`), llama.cpp parses it into a sampler, each drawn
token is checked against it, and a rejected draw applies it to the 256 candidates of
highest logit, or to the whole vocabulary (`sampling.TokenSampler`). Before session 9
the answer from results had a builder of its own (`answer_words.speech_grammar_without`,
kept verbatim in tests/local_llm/old_speech_grammars.py) and its path built the plain
grammar first, then its own, then parsed it once more to check it (`check_grammar`).

Old and new are measured interleaved in one run (rounds alternate their order), as
medians, and reported as ratios old/new with the load (`uptime`) before and after: only
the ratios mean something on a shared machine. Uses the model's vocabulary only (no
weights, nothing generated).

    PYTHONPATH=$PWD .venv/bin/python bench/speech_grammar_cost.py            # ~1-3 min
    PYTHONPATH=$PWD .venv/bin/python bench/speech_grammar_cost.py --rounds 3 --no-full
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "local_llm"))

from old_speech_grammars import (  # noqa: E402  (the pre-session-9 builders, test-only)
    old_speech_grammar,
    old_speech_grammar_without,
)

from voice_agent.local_llm.answer_words import INSIDE_WORDS_LETTERS  # noqa: E402
from voice_agent.local_llm.grammar import (  # noqa: E402
    UNSPEAKABLE_WORDS,
    _word_states,
    check_grammar,
    speech_grammar,
)
from voice_agent.local_llm.models import resolve_model  # noqa: E402

#: A conversation's numbers as `grounding.conversation_numbers` finds them in a demo
#: call (the prompt's, an order number, a result's date and hours).
NUMBERS = {"58213", "0", "1", "2", "5", "7", "9", "10", "12", "17", "24", "28", "30", "2026"}
#: The answer's banned stems: two (e11 "dispatched" / e01 "left the warehouse"), six.
CASES: dict[str, list[str] | None] = {
    "plain": None,
    "answer, 2 stems": ["dispatch", "left"],
    "answer, 6 stems": ["dispatch", "warehous", "left", "parcel", "courier", "arriv"],
}
#: What the model says, token by token (each drawn token is checked on its own).
SENTENCE = "Your order 58213 has shipped on May 28 and should be with you by 5 pm, okay?"
#: Where a rejected draw is measured: mid-word, mid-sentence.
PREFIX = "Your order 58213 has sh"


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


class Vocab:
    """The model's vocabulary and llama.cpp's grammar sampler on it."""

    def __init__(self, model: str) -> None:
        import llama_cpp
        from llama_cpp import llama_cpp as native

        self.native = native
        self.llama = llama_cpp.Llama(str(resolve_model(model)), vocab_only=True, verbose=False)
        self.vocab = self.llama._model.vocab
        self.n_vocab = self.llama.n_vocab()
        dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self.dtype = dtype
        rng = np.random.default_rng(0)
        self.top_ids = np.sort(rng.choice(self.n_vocab, 256, replace=False)).astype(np.int32)

    def parse(self, grammar: str) -> Any:
        sampler = self.native.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        assert sampler, "llama.cpp rejected the grammar"
        return sampler

    def free(self, sampler: Any) -> None:
        self.native.llama_sampler_free(sampler)

    def accept_text(self, sampler: Any, text: str) -> float:
        """Check and accept `text` token by token, as drawn tokens are: ms per token."""
        native = self.native
        tokens = self.llama.tokenize(text.encode(), add_bos=False, special=False)
        one = native.llama_token_data(0, 1.0, 0.0)
        array = native.llama_token_data_array(
            data=ctypes.pointer(one), size=1, selected=-1, sorted=False
        )
        start = time.perf_counter()
        for token in tokens:
            one.id, one.logit = token, 1.0
            array.size, array.selected = 1, -1
            native.llama_sampler_apply(sampler, ctypes.byref(array))
            assert one.logit != -float("inf"), (text, token)
            native.llama_sampler_accept(sampler, token)
        return (time.perf_counter() - start) * 1000 / len(tokens)

    def apply(self, sampler: Any, ids: np.ndarray) -> float:
        """Apply the grammar to these candidates once: ms."""
        native = self.native
        data = np.zeros(len(ids), dtype=self.dtype)
        data["id"], data["logit"] = ids, 1.0
        array = native.llama_token_data_array(
            data=data.ctypes.data_as(native.llama_token_data_p),
            size=len(ids),
            selected=-1,
            sorted=False,
        )
        return _ms(lambda: native.llama_sampler_apply(sampler, ctypes.byref(array)))


def _old(banned: list[str] | None) -> tuple[Callable[[], str], Callable[[str], None]]:
    """The old path: its build, and what it did besides the sampler's parse."""
    if banned is None:
        return (lambda: old_speech_grammar(NUMBERS)), (lambda _: None)

    def build() -> str:
        old_speech_grammar(NUMBERS)  # _speak built the plain grammar first
        return old_speech_grammar_without([*banned, *UNSPEAKABLE_WORDS], NUMBERS)

    return build, check_grammar  # _answer parsed it once more to check it


def _new(banned: list[str] | None) -> tuple[Callable[[], str], Callable[[str], None]]:
    """The new path. Its word automaton is cached per banned set: the plain speech's
    recurs on every request (cached here too), an answer's stems differ from one
    request to the next (the cache is cleared before each of its builds)."""

    def build() -> str:
        if banned is not None:
            _word_states.cache_clear()
        long = [s for s in banned or () if len(s) >= INSIDE_WORDS_LETTERS]  # as answer_bans
        return speech_grammar(NUMBERS, long, [s for s in banned or () if s not in long])

    return build, (lambda _: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct-q4_k_m")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-full", action="store_true", help="skip whole-vocabulary runs")
    args = parser.parse_args()

    load_before = _uptime()
    vocab = Vocab(args.model)
    results: dict[str, Any] = {"model": args.model, "n_vocab": vocab.n_vocab}
    full_ids = np.arange(vocab.n_vocab, dtype=np.int32)
    for case, banned in CASES.items():
        samples: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
        for round_ in range(args.rounds):
            sides = [("old", _old(banned)), ("new", _new(banned))]
            for side, (build, extra) in sides if round_ % 2 == 0 else sides[::-1]:
                into = samples[side]
                clock = time.perf_counter()
                grammar = build()
                built = time.perf_counter()
                extra(grammar)
                checked = time.perf_counter()
                sampler = vocab.parse(grammar)
                parsed = time.perf_counter()
                for key, value in [
                    ("build_ms", built - clock),
                    ("extra_parse_ms", checked - built),
                    ("parse_ms", parsed - checked),
                ]:
                    into.setdefault(key, []).append(value * 1000)
                into.setdefault("token_check_ms", []).append(vocab.accept_text(sampler, SENTENCE))
                vocab.free(sampler)
                sampler = vocab.parse(grammar)
                vocab.accept_text(sampler, PREFIX)
                into.setdefault("top256_ms", []).append(vocab.apply(sampler, vocab.top_ids))
                if not args.no_full:
                    into.setdefault("full_vocab_ms", []).append(vocab.apply(sampler, full_ids))
                vocab.free(sampler)
                into.setdefault("grammar_chars", []).append(len(grammar))
        medians = {
            side: {k: round(statistics.median(v), 3) for k, v in values.items()}
            for side, values in samples.items()
        }
        for side in medians:
            m = medians[side]
            m["per_request_ms"] = round(m["build_ms"] + m["extra_parse_ms"] + m["parse_ms"], 3)
        ratios = {
            k: round(medians["old"][k] / medians["new"][k], 2)
            for k in medians["new"]
            if medians["new"][k] > 0 and k != "extra_parse_ms"
        }
        results[case] = {**medians, "old/new": ratios}
    results["uptime_before"] = load_before
    results["uptime_after"] = _uptime()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
