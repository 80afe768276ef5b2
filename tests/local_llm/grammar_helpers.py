"""llama.cpp's own grammar matcher, for tests that check what a grammar lets a model say."""

from __future__ import annotations

import ctypes
import math
from typing import Any


def grammar_accepts(llama: Any, grammar: str, text: str, *, complete: bool = True) -> bool:
    """Whether llama.cpp's grammar matcher, fed `text` afresh on `llama`'s vocabulary,
    accepts it (and, when `complete`, its end as well)."""
    from llama_cpp import llama_cpp as native

    matcher = native.llama_sampler_init_grammar(
        llama._model.vocab, grammar.encode("utf-8"), b"root"
    )
    assert matcher, "llama.cpp rejected the grammar"
    try:
        tokens = list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        for token in [*tokens, llama.token_eos()] if complete else tokens:
            one = native.llama_token_data(token, 1.0, 0.0)
            array = native.llama_token_data_array(
                data=ctypes.pointer(one), size=1, selected=-1, sorted=False
            )
            native.llama_sampler_apply(matcher, ctypes.byref(array))
            if one.logit == -math.inf:
                return False
            if token != llama.token_eos():
                native.llama_sampler_accept(matcher, token)
        return True
    finally:
        native.llama_sampler_free(matcher)
