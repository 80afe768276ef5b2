"""Token sampling on llama.cpp's C API, with the grammar checked on the sampled token only.

`Llama.generate` puts the grammar in the sampler chain, so the grammar is
matched against all ~151k vocabulary entries at every step; with the tool
grammar that halves decoding speed. `TokenSampler` does what llama.cpp's own
`common_sampler_sample` does instead:

1. run the ordinary chain (top-k, top-p, min-p, temperature, draw) on the
   raw logits (`llama_sampler_sample`, all in C);
2. ask the grammar about the drawn token alone (a one-element candidate
   array); if it is allowed, that is the token;
3. otherwise apply the grammar to the full candidate list, run the chain
   again on what is left, and take that token.

This is rejection sampling: a token the model would pick anyway costs one
grammar check instead of ~151k, and each allowed token ends up as likely as
with grammar-first sampling, except that step 1 computes top-k/top-p/min-p on
the unconstrained list (an allowed token below those cut-offs is reached only
through step 3). Greedy decoding (temperature 0) gives exactly the
grammar-first tokens; with a seed, the tokens differ from grammar-first's
(the random draws are used differently), not their distribution.

`accept(token)` advances the grammar; call it for every token kept.

`forced_text()` reads the grammar alone: the text it admits as the only
continuation from here (a JSON property name and its ``": "``, a closing
``}\n</tool_call>``, the rest of the only number that starts so), found by
probing the grammar with the vocabulary's 256 single-byte tokens and an
end-of-generation token, character by character. The model's choice cannot
change that text, so the engine evaluates it in one batch instead of
sampling it token by token.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import numpy as np

#: Layout of `llama_token_data` (int32 id, float logit, float p; 12 bytes).
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class SamplerInitError(RuntimeError):
    """The C sampler objects could not be built (unexpected llama.cpp build or grammar)."""


def check_low_level_api() -> None:
    """Raise `SamplerInitError` if this llama-cpp-python lacks what `TokenSampler` uses."""
    from llama_cpp import llama_cpp as native

    needed = (
        "llama_get_logits_ith",
        "llama_sampler_sample",
        "llama_sampler_apply",
        "llama_sampler_accept",
        "llama_sampler_chain_init",
        "llama_sampler_chain_add",
        "llama_sampler_chain_default_params",
        "llama_sampler_init_grammar",
        "llama_sampler_init_top_k",
        "llama_sampler_init_top_p",
        "llama_sampler_init_min_p",
        "llama_sampler_init_temp",
        "llama_sampler_init_dist",
        "llama_sampler_init_greedy",
        "llama_sampler_free",
        "llama_token_data_array",
    )
    missing = [name for name in needed if not hasattr(native, name)]
    if missing:
        raise SamplerInitError(f"llama_cpp lacks {', '.join(missing)}")
    if ctypes.sizeof(native.llama_token_data) != _TOKEN_DATA.itemsize:
        raise SamplerInitError("llama_token_data has an unexpected layout")


#: Token ids searched for the vocabulary's single-byte tokens (byte-level BPE puts
#: them first: Qwen's are ids 0-255, SentencePiece's <0xNN> follow a few specials).
_BYTE_TOKEN_SEARCH = 1024
#: After a rejected draw the grammar is applied first to this many candidates of highest
#: logit, and to the whole vocabulary only when too few of them are allowed (none for a
#: greedy draw; fewer than top-k for a sampled one, whose chain keeps the top-k: then the
#: same candidates reach the chain either way). llama.cpp's grammar matches every
#: candidate's text: on the 1.5B's 151,936 tokens one application took 0.35 s with the
#: plain speech grammar and 1.1-3.7 s with an answer's banned words (load 30; session 8).
#: Candidates.
RESAMPLE_TOP = 256
#: Characters `forced_text` looks ahead at most per call (a long literal continues at the
#: next call).
FORCED_TEXT_LIMIT = 64


class ByteProbe:
    """The vocabulary's single-byte tokens and one end-of-generation token.

    Build with `ByteProbe.from_vocab`; it returns None when some byte has no
    token of its own (the probe could not tell a forced character from a
    choice then, so no text is ever forced).
    """

    def __init__(self, byte_tokens: list[int], eog_token: int) -> None:
        if len(byte_tokens) != 256:
            raise ValueError("need one token per byte value")
        self.byte_tokens = byte_tokens
        self.ids = np.array([*byte_tokens, eog_token], dtype=np.int32)

    @classmethod
    def from_vocab(cls, vocab: Any, n_vocab: int, token_bytes: Any) -> ByteProbe | None:
        """`token_bytes(id)` is a token's text as bytes (special tokens as empty)."""
        from llama_cpp import llama_cpp as native

        found: dict[int, int] = {}
        for token in range(min(n_vocab, _BYTE_TOKEN_SEARCH)):
            piece = token_bytes(token)
            if len(piece) == 1 and piece[0] not in found:
                found[piece[0]] = token
        eog = int(native.llama_vocab_eos(vocab))
        if eog < 0:
            eog = int(native.llama_vocab_eot(vocab))
        if len(found) != 256 or eog < 0:
            return None
        return cls([found[b] for b in range(256)], eog)


class TokenSampler:
    """Draws the next token from a context's last logits; one instance per generation.

    `temperature` 0 means greedy; below 0, a plain draw from the softmax (as
    in `Llama.generate`). `grammar` is GBNF text with root rule ``root`` (None:
    unconstrained). Not thread-safe; `close()` frees the C objects
    (idempotent).
    """

    def __init__(
        self,
        *,
        ctx: Any,
        vocab: Any,
        n_vocab: int,
        temperature: float,
        top_k: int,
        top_p: float,
        min_p: float,
        seed: int,
        grammar: str | None,
        probe: ByteProbe | None = None,
        alternatives: int = 0,
    ) -> None:
        from llama_cpp import llama_cpp as native

        self._native = native
        self._ctx = ctx
        self._n_vocab = n_vocab
        #: Allowed candidates a rejected draw needs among the top ones (`RESAMPLE_TOP`):
        #: one when greedy, top-k when sampled; a plain draw (temperature < 0) needs all.
        self._enough = 1 if temperature == 0 else (top_k if temperature > 0 and top_k > 0 else 0)
        self.candidates_checked = 0  # candidates the grammar was applied to after rejections
        self._chain: Any = None
        self._grammar: Any = None
        self.grammar_checks = 0  # drawn tokens checked against the grammar
        self.grammar_resamples = 0  # ... of which were rejected and drawn again
        self._probe = probe
        self._alternatives = alternatives
        #: With `alternatives` > 0: the most likely tokens at the last `sample`, by the
        #: model's probability (temperature 1, no grammar), most likely first.
        self.last_alternatives: list[tuple[int, float]] = []
        try:
            self._chain = native.llama_sampler_chain_init(
                native.llama_sampler_chain_default_params()
            )
            if not self._chain:
                raise SamplerInitError("llama_sampler_chain_init returned NULL")
            # Same chain as Llama._init_sampler, minus its no-op stages: the
            # repetition penalties (all neutral here) and typical-p (p = 1.0).
            if temperature < 0:
                stages = [native.llama_sampler_init_dist(seed)]
            elif temperature == 0:
                stages = [native.llama_sampler_init_greedy()]
            else:
                stages = [
                    native.llama_sampler_init_top_k(top_k),
                    native.llama_sampler_init_top_p(top_p, 1),
                    native.llama_sampler_init_min_p(min_p, 1),
                    native.llama_sampler_init_temp(temperature),
                    native.llama_sampler_init_dist(seed),
                ]
            for stage in stages:
                if not stage:
                    raise SamplerInitError("a llama_sampler_init_* call returned NULL")
                native.llama_sampler_chain_add(self._chain, stage)  # the chain owns it
            if grammar is not None:
                self._grammar = native.llama_sampler_init_grammar(
                    vocab, grammar.encode("utf-8"), b"root"
                )
                if not self._grammar:
                    raise SamplerInitError("llama.cpp rejected the grammar")
            self._candidates = np.empty(n_vocab, dtype=_TOKEN_DATA)
            self._top = np.empty(min(RESAMPLE_TOP, n_vocab), dtype=_TOKEN_DATA)
            self._top_array: Any = native.llama_token_data_array(
                data=self._top.ctypes.data_as(native.llama_token_data_p),
                size=len(self._top),
                selected=-1,
                sorted=False,
            )
            self._ids = np.arange(n_vocab, dtype=np.int32)
            self._array: Any = native.llama_token_data_array(
                data=self._candidates.ctypes.data_as(native.llama_token_data_p),
                size=n_vocab,
                selected=-1,
                sorted=False,
            )
            if probe is not None:
                self._probe_data = np.zeros(len(probe.ids), dtype=_TOKEN_DATA)
                self._probe_array: Any = native.llama_token_data_array(
                    data=self._probe_data.ctypes.data_as(native.llama_token_data_p),
                    size=len(probe.ids),
                    selected=-1,
                    sorted=False,
                )
            self._one: Any = native.llama_token_data(0, 0.0, 0.0)
            self._one_pointer = ctypes.pointer(self._one)
            self._one_array: Any = native.llama_token_data_array(
                data=self._one_pointer, size=1, selected=-1, sorted=False
            )
        except BaseException:
            self.close()
            raise

    def sample(self, index: int = -1) -> int:
        """The next token, drawn from the logits of the last evaluated token (or of the
        `index`-th token of the last batch, when that batch kept every token's logits).
        With `alternatives`, the most likely tokens there are kept in `last_alternatives`."""
        if self._alternatives > 0:
            self.last_alternatives = self._most_likely(index)
        return self._sample(index)

    def _most_likely(self, index: int) -> list[tuple[int, float]]:
        """The `alternatives` tokens of highest logit at `index` and their probabilities
        (softmax at temperature 1 over the whole vocabulary, the grammar not applied)."""
        logits = self._native.llama_get_logits_ith(self._ctx, index)
        if not logits:
            raise RuntimeError("llama.cpp has no logits for the last token")
        # (in float32, summed in float64: 6 ms a step on the 1.5B's 151,936 tokens at
        # load 7, half the time of a float64 copy)
        values = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        n = min(self._alternatives, self._n_vocab)
        top = np.argpartition(values, self._n_vocab - n)[-n:]
        highest = values.max()
        total = np.exp(values - highest).sum(dtype=np.float64)
        probabilities = np.exp(values[top].astype(np.float64) - highest) / total
        order = np.argsort(-probabilities)
        return [(int(top[i]), float(probabilities[i])) for i in order]

    def _sample(self, index: int) -> int:
        native = self._native
        # The common case in C: candidates built from the logits, chain applied.
        token = int(native.llama_sampler_sample(self._chain, self._ctx, index))
        if self._grammar is None:
            return token
        self.grammar_checks += 1
        one = self._one
        one.id, one.logit, one.p = token, 1.0, 0.0
        array = self._one_array
        array.data, array.size, array.selected, array.sorted = self._one_pointer, 1, -1, False
        native.llama_sampler_apply(self._grammar, ctypes.byref(array))
        if one.logit != -math.inf:
            return token
        self.grammar_resamples += 1
        self._load_logits(index)
        top = self._top_candidates()
        if top is not None:
            return top
        self.candidates_checked += self._n_vocab
        native.llama_sampler_apply(self._grammar, ctypes.byref(self._array))
        native.llama_sampler_apply(self._chain, ctypes.byref(self._array))
        return self._selected(self._array)

    def _top_candidates(self) -> int | None:
        """After a rejected draw: the token drawn from the `RESAMPLE_TOP` candidates of
        highest logit that the grammar allows, when there are enough of them for the
        chain to see what it would see on the whole vocabulary; else None."""
        n_top = len(self._top)
        if not self._enough or n_top >= self._n_vocab:
            return None
        native = self._native
        candidates = self._candidates
        picked = np.argpartition(candidates["logit"], self._n_vocab - n_top)[-n_top:]
        top = self._top
        top[:] = candidates[picked]
        array = self._top_array
        array.data = top.ctypes.data_as(native.llama_token_data_p)
        array.size, array.selected, array.sorted = n_top, -1, False
        self.candidates_checked += n_top
        native.llama_sampler_apply(self._grammar, ctypes.byref(array))
        if int(np.count_nonzero(top["logit"] != -np.inf)) < self._enough:
            return None
        native.llama_sampler_apply(self._chain, ctypes.byref(array))
        return self._selected(array)

    def accept(self, token: int) -> None:
        """Advance the grammar past `token`.

        (The chain's stages keep no state between tokens, so only the grammar
        needs it.) Not for an end-of-generation token: decoding stops there
        anyway, and llama.cpp aborts the process if the grammar is given an
        end token it does not allow.
        """
        if self._grammar is not None:
            self._native.llama_sampler_accept(self._grammar, token)

    def forced_text(self, limit: int = FORCED_TEXT_LIMIT) -> str:
        """The text the grammar admits as the only continuation (ASCII, up to `limit`
        characters; "" when the next character is a choice, the reply may end here,
        or there is no grammar or probe). The grammar is not advanced: the caller
        passes what it evaluates of that text to `accept_text`."""
        if self._grammar is None or self._probe is None:
            return ""
        native = self._native
        probe = self._probe
        data, array = self._probe_data, self._probe_array
        trial = native.llama_sampler_clone(self._grammar)
        if not trial:
            return ""
        forced = bytearray()
        try:
            while len(forced) < limit:
                data["id"] = probe.ids
                data["logit"] = 0.0
                data["p"] = 0.0
                array.data = data.ctypes.data_as(native.llama_token_data_p)
                array.size, array.selected, array.sorted = len(data), -1, False
                native.llama_sampler_apply(trial, ctypes.byref(array))
                allowed = np.flatnonzero(data["logit"] != -np.inf)
                if len(allowed) != 1 or data["id"][allowed[0]] == probe.ids[-1]:
                    break  # a choice, or the reply may end here
                byte = int(np.flatnonzero(probe.ids[:256] == data["id"][allowed[0]])[0])
                if byte >= 0x80:
                    break  # a forced non-ASCII character: left to the model
                forced.append(byte)
                native.llama_sampler_accept(trial, probe.byte_tokens[byte])
        finally:
            native.llama_sampler_free(trial)
        return forced.decode("ascii")

    def accept_text(self, text: str) -> None:
        """Advance the grammar past `text` (a prefix of `forced_text()`)."""
        if self._grammar is None or self._probe is None:
            return
        for byte in text.encode("ascii"):
            self._native.llama_sampler_accept(self._grammar, self._probe.byte_tokens[byte])

    def close(self) -> None:
        """Free the chain and the grammar (idempotent)."""
        chain, self._chain = self._chain, None
        grammar, self._grammar = self._grammar, None
        if chain:
            self._native.llama_sampler_free(chain)
        if grammar:
            self._native.llama_sampler_free(grammar)

    def _load_logits(self, index: int = -1) -> None:
        logits = self._native.llama_get_logits_ith(self._ctx, index)
        if not logits:
            raise RuntimeError("llama.cpp has no logits for the last token")
        candidates = self._candidates
        candidates["id"] = self._ids
        candidates["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        candidates["p"] = 0.0
        array = self._array
        array.data = candidates.ctypes.data_as(self._native.llama_token_data_p)
        array.size, array.selected, array.sorted = self._n_vocab, -1, False

    def _selected(self, array: Any) -> int:
        if not 0 <= array.selected < array.size:
            raise RuntimeError("the sampler chain selected no token")
        return int(array.data[array.selected].id)
