"""One llama.cpp model, one generation at a time, decoded in a worker thread.

`LlamaEngine.generate` tokenizes a rendered prompt, decodes in a thread
(llama.cpp calls block), and hands each decoded text piece to an async
callback on the event loop. The KV cache is kept between requests: the
longest common token prefix with the previous request is reused, so a shared
system prompt is evaluated once; beyond it, cached tokens that spell the
prompt's next text are kept too (the model's own tokens for a reply the next
request re-renders from its text: `LlamaEngine._keeping_own_tokens`).

Two decoding paths (`DecodePath`), with the same sampling parameters (see
`sampling` for how their draws differ):

- ``"lowlevel"`` (default): our own loop on llama.cpp's C API, sampling with
  `sampling.TokenSampler`, which checks the grammar on the drawn token only
  and applies it to the whole vocabulary only when that token is rejected
  (as llama.cpp's own sampler does). About twice as fast with a grammar.
  With `force_text` on (off by default, see its comment), text the grammar
  admits as the only continuation (`TokenSampler.forced_text`:
  a call's property names and punctuation, its closing ``}\n</tool_call>``)
  is not sampled: it is tokenized as plain text and evaluated in one batch
  with the token before it, but for its last token, which the model writes
  itself (it may join it to the choice that follows: ``>\n``). A batch costs
  far less per token than a step of its own on a CPU, and the reply's text
  and its distribution are the same (the grammar leaves no choice there).
- ``"generate"``: `Llama.generate` with the grammar in its sampler chain,
  matched against every vocabulary entry at every step. Used when the
  low-level API is missing or a sampler cannot be built.

Concurrency: generations are serialised by an `asyncio.Lock`; a second
caller waits. Cancellation: when the callback raises or the awaiting task is
cancelled, the worker is told to stop, and `generate` returns or raises only
after the worker has stopped decoding (between two tokens), so the model is
never used by two threads.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from voice_agent.local_llm.errors import LocalLlmError
from voice_agent.local_llm.sampling import (
    ByteProbe,
    SamplerInitError,
    TokenSampler,
    check_low_level_api,
)

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled"]
DecodePath = Literal["lowlevel", "generate"]

#: The path an engine decodes with unless told otherwise (see the module docstring).
DEFAULT_DECODE_PATH: DecodePath = "lowlevel"

#: Sampling defaults when a request leaves them out. OpenAI's temperature
#: default is 1.0; a 0.5B model rambles at 1.0, so the server uses 0.7.
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.95
#: Most tokens of a draft checked in one batch: a wrong draft costs its batch (a few
#: tokens of prompt evaluation), a right one saves a model step per token (tokens).
_DRAFT_TOKENS = 6
#: Replies kept as a source of drafts (the call format as this model spells it).
_RECENT_REPLIES = 8
#: llama.cpp's customary top-k / min-p (candidates kept per step, probability floor).
_TOP_K = 40
_MIN_P = 0.05


class PromptTooLongError(LocalLlmError):
    """The prompt does not fit the context window (with room for one token)."""


@dataclass(frozen=True)
class SamplingParams:
    """What a request may tune. `max_tokens` None means up to the context's end."""

    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: How many of the most likely tokens each sampled step records with their
    #: probabilities (`GenerationStats.extra["alternatives"]`, see
    #: `_ReplyTokens.note_alternatives`); 0: none. Read by the decision step
    #: (`decision_margin`); only the low-level decoding path records them.
    alternatives: int = 0


@dataclass
class GenerationStats:
    """Counts and timings of one generation (seconds on `time.monotonic`)."""

    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0  # prompt prefix already in the KV cache
    completion_tokens: int = 0
    finish_reason: FinishReason = "length"
    first_token_s: float | None = None  # request start -> first decoded token
    total_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


_END = object()


class LlamaEngine:
    """A loaded model. Build with `LlamaEngine.load`; `close()` frees it.

    `decode_path` is the path asked for; if it is ``"lowlevel"`` and this
    llama-cpp-python lacks the C functions it needs, the engine logs a
    warning and uses ``"generate"``. `self.decode_path` is the one in use.
    """

    def __init__(
        self, llama: Any, name: str, decode_path: DecodePath = DEFAULT_DECODE_PATH
    ) -> None:
        self._llama = llama
        self.name = name
        self._lock = asyncio.Lock()
        if decode_path == "lowlevel":
            try:
                check_low_level_api()
            except SamplerInitError as exc:
                log.warning("low-level decoding unavailable (%s); using Llama.generate", exc)
                decode_path = "generate"
        self.decode_path: DecodePath = decode_path
        self._probe: ByteProbe | None = None
        self._prefill_task: asyncio.Future[int] | None = None
        #: Evaluate forced text in batches (see the module docstring). Off: the 1.5B's
        #: choice after a call (another call or the end of its turn) hangs on how the
        #: call is tokenized, and forcing changes that. Token by token under the grammar
        #: it writes ' ' '{"' ... '"}}' '\n' '<' '/' 'tool' '_call' '>' and ends its turn
        #: (p 0.998 after '>'); with the call's start forced as the template tokenizes it
        #: (' {"'), it spelled the tag '<' '/tool' '_call' '>\n' by itself and went on
        #: with more calls (u02, h03, h10, u03: 3-4 calls; session 6); with the template's
        #: special token '</tool_call>' it wants '\n' then '<|endoftext|>' (p 0.999,
        #: 0.994 even for two orders asked together), so a grammar that only offers
        #: another call there gets four. Not a grammar or KV-cache fault: the model's
        #: own end-of-calls choice is fragile; see docs/results.md (session 6).
        self.force_text = False
        #: Reuse the KV cache by text, not only by tokens (`_keeping_own_tokens`): a
        #: follow-up request keeps the model's own tokens for the reply it re-renders.
        #: Off: with the call in the model's own tokens before the results, the 1.5B
        #: answered h18 ("When is that due?" after a balance) with the balance only; with
        #: the template's tokens, "... and it is due on June 3." (bench/embedded_steps.py
        #: --only h18, with and without --by-tokens-only, session 7). Saves ~18 tokens of
        #: evaluation per call re-rendered; needs a quality run before it is turned on.
        self.keep_own_tokens = False
        #: Decode greedy replies with drafts (`_decode_low_level`): meant to give the same
        #: text in fewer model steps where the reply repeats its context or an earlier
        #: reply. Off: on this CPU a draft batch (7 tokens, every position's logits: the
        #: 151,936-entry output layer 7 times) cost ~5 one-token steps, and ~1 drafted
        #: token in 3 was kept (1.5B, bench/embedded_steps.py --ab speculate, session 8:
        #: h03's call step 26 batches 26.9 s for 40 kept tokens, 17 plain steps 3.6 s).
        #: Nor is it the same text on the 1.5B: a batch's logits differ from a step's in
        #: the last bits, enough to flip a near tie ("with ID" / "with the number"; the
        #: choice between a second call and the end of the turn).
        self.speculate = False
        #: The tokens of the last few replies, a source of drafts (`_draft`).
        self._recent_replies: collections.deque[Any] = collections.deque(maxlen=_RECENT_REPLIES)
        #: Tokens this model has evaluated since it was loaded (prompts and replies, counted
        #: when evaluated), a progress count for clients; written by the decoding thread.
        self.evaluated_tokens = 0
        if decode_path == "lowlevel":
            self._probe = _byte_probe(llama)
            if self._probe is None:
                log.warning("%s: no single-byte token per byte; forced text is sampled", name)
        log.info(
            "%s: decoding with %s",
            name,
            "the low-level loop (grammar checked on the drawn token)"
            if decode_path == "lowlevel"
            else "Llama.generate (grammar applied to the whole vocabulary)",
        )

    @classmethod
    def load(
        cls,
        path: Path,
        name: str,
        threads: int,
        ctx: int,
        decode_path: DecodePath = DEFAULT_DECODE_PATH,
    ) -> LlamaEngine:
        """Load a GGUF file (blocking, ~1 s for the 0.5B model)."""
        from llama_cpp import Llama

        llama = Llama(
            model_path=str(path),
            n_ctx=ctx,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,  # True keeps logits for every prompt token: triples prompt time
            verbose=False,
        )
        return cls(llama, name, decode_path)

    @property
    def busy(self) -> bool:
        """A generation holds the model (its worker thread may be evaluating)."""
        return self._lock.locked()

    @property
    def n_ctx(self) -> int:
        return int(self._llama.n_ctx())

    def tokenize(self, prompt: str) -> list[int]:
        """Prompt tokens; ChatML control tokens in the text are parsed as such."""
        return list(self._llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def close(self) -> None:
        """Free the model (idempotent); a prefill not yet started is dropped."""
        if self._prefill_task is not None and not self._prefill_task.done():
            self._prefill_task.cancel()
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()

    async def generate(
        self,
        prompt: str,
        params: SamplingParams,
        grammar: str | None,
        on_text: Callable[[str], Awaitable[bool]],
        until: Callable[[str], bool] | None = None,
    ) -> GenerationStats:
        """Decode a reply to `prompt`, awaiting `on_text(piece)` for each text piece.

        `on_text` returns False to end the reply early (finish_reason "stop").
        `until(text so far)` is asked in the decoding thread after each token:
        True ends the reply there, before that token is evaluated (a decision
        that is made costs no further model step; `on_text` answers too late
        for that, since it runs on the event loop).

        Text pieces are whole UTF-8 characters; stop strings are cut off (the
        stop string itself is never passed on). Returns when decoding ended
        (end of turn, a stop string, `max_tokens`, or the context's end).
        If `on_text` raises or the caller is cancelled, decoding stops before
        the next token and the exception propagates.
        """
        tokens = self.tokenize(prompt)
        if len(tokens) >= self.n_ctx:
            raise PromptTooLongError(
                f"prompt has {len(tokens)} tokens; the context holds {self.n_ctx}"
            )
        async with self._lock:
            tokens = self._keeping_own_tokens(prompt, tokens)
            room = self.n_ctx - len(tokens)
            if room < 1:
                raise PromptTooLongError(
                    f"prompt has {len(tokens)} tokens; the context holds {self.n_ctx}"
                )
            max_tokens = room if params.max_tokens is None else min(params.max_tokens, room)
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[object] = asyncio.Queue()
            stop = threading.Event()
            stats = GenerationStats(prompt_tokens=len(tokens))

            def emit(item: object) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            worker = asyncio.ensure_future(
                asyncio.to_thread(
                    self._decode, tokens, params, grammar, max_tokens, stats, stop, emit, until
                )
            )
            try:
                while (item := await queue.get()) is not _END:
                    if not await on_text(str(item)):
                        stop.set()
                        stats.extra["stopped_by_caller"] = True
                        break  # nothing after the caller's stop is passed on
            finally:
                stop.set()
                await _wait_even_if_cancelled(worker)
            worker.result()  # re-raise a decoding error
            if stats.extra.get("stopped_by_caller"):
                stats.finish_reason = "stop"
            return stats

    async def next_token_probability(self, prompt: str, text: str) -> float:
        """The model's probability (temperature 1, no grammar) that the token after
        `prompt` is the first token of `text`; `prompt` stays evaluated, its logits live,
        so a `generate` on the same prompt next evaluates nothing before its first draw.

        For a choice the model makes with its first token anyway (after tool results:
        a call, which starts with ``<tool_call>``, or words), read off the logits the
        reply's first draw needs, instead of a step of its own.
        """
        wanted = self.tokenize(text)[:1]
        tokens = self.tokenize(prompt)
        if not wanted or not tokens or len(tokens) >= self.n_ctx:
            raise PromptTooLongError(
                f"prompt has {len(tokens)} tokens; the context holds {self.n_ctx}"
            )
        async with self._lock:
            tokens = self._keeping_own_tokens(prompt, tokens)
            worker = asyncio.ensure_future(asyncio.to_thread(self._probability, tokens, wanted[0]))
            await _wait_even_if_cancelled(worker)
            return worker.result()

    def _probability(self, tokens: list[int], token: int) -> float:
        import numpy as np
        from llama_cpp import llama_cpp as native

        pending = _reuse_kv_cache(self._llama, tokens)
        if pending:
            self._eval(pending)
        pointer = native.llama_get_logits_ith(self._llama._ctx.ctx, -1)
        if not pointer:
            raise RuntimeError("llama.cpp has no logits for the last token")
        logits = np.ctypeslib.as_array(pointer, shape=(self._llama.n_vocab(),)).astype(np.float64)
        top = float(logits.max())
        return float(np.exp(logits[token] - top) / np.exp(logits - top).sum())

    def prefill_soon(self, prompt: str) -> None:
        """Evaluate `prompt` into the KV cache in the background, so that a request whose
        prompt starts with it evaluates only what follows.

        For the time a tool runs: a reply that ends in calls is followed by a request
        that starts with those calls and the head of their results, known before the
        results arrive. The work takes the generation lock like a request (a request
        that comes meanwhile waits for it; a model step is never interrupted), replaces
        a prefill not yet started, and is dropped on `close()`. A wrong guess costs only
        the time: the next request keeps the cache's common prefix with its own prompt.
        """
        previous, self._prefill_task = self._prefill_task, None
        if previous is not None and not previous.done():
            previous.cancel()
        self._prefill_task = asyncio.ensure_future(self.prefill(prompt))
        self._prefill_task.add_done_callback(_log_prefill_failure)

    async def prefill(self, prompt: str) -> int:
        """Evaluate `prompt` into the KV cache now (no reply); the tokens evaluated."""
        tokens = self.tokenize(prompt)
        if not tokens or len(tokens) >= self.n_ctx:
            return 0
        async with self._lock:
            tokens = self._keeping_own_tokens(prompt, tokens)
            if len(tokens) >= self.n_ctx:
                return 0
            worker = asyncio.ensure_future(asyncio.to_thread(self._prefill, tokens))
            await _wait_even_if_cancelled(worker)
            return worker.result()

    def _keeping_own_tokens(self, prompt: str, tokens: list[int]) -> list[int]:
        """`tokens` (the prompt as tokenized), but where the KV cache holds text the
        prompt repeats in other tokens, the cache's tokens for it (when `keep_own_tokens`).

        A request that follows a reply re-renders that reply (a call, an answer) from
        its text, and the text tokenizes otherwise than the model wrote it: the call
        step's prompt ends in ``"arguments": `` and the model writes `` {"``, or
        ``"}}`` then ``\n``; the template has `` {"`` and ``"}}\n``. Compared token by
        token, the cache then ended at the call's first argument and the whole call
        and its closing tag were evaluated again before the results (17-25 tokens for
        one order lookup, before the first word of the answer). The model's own tokens
        mean the same text; what follows them is tokenized from where they end. Only
        the cache's own tokens are kept, and only while their text is the prompt's; the
        result is checked to spell the prompt exactly, else the prompt's tokens are used.
        Called with the lock held (the cache is not changing).
        """
        if not self.keep_own_tokens:
            return tokens
        llama = self._llama
        cached = list(llama._input_ids[: llama.n_tokens])
        same = _common_prefix(cached, tokens)
        if same >= len(cached) or same >= len(tokens):
            return tokens  # the cache is all reused already, or holds the whole prompt
        data = prompt.encode("utf-8")
        at = len(llama.detokenize(cached[:same], special=True))
        if data[:at] != llama.detokenize(tokens[:same], special=True):
            return tokens
        kept = same
        while kept < len(cached):
            piece = llama.detokenize([cached[kept]], special=True)
            if not piece or not data.startswith(piece, at):
                break
            at += len(piece)
            kept += 1
        if kept == same:
            return tokens
        rest = data[at:]
        try:
            rest.decode("utf-8")  # never split a character between cache and prompt
        except UnicodeDecodeError:
            return tokens
        joined = cached[:kept]
        if rest:  # (else the whole prompt is cached: its last token gives the logits again)
            joined += list(llama.tokenize(rest, add_bos=False, special=True))
        if llama.detokenize(joined, special=True) != data:
            return tokens
        return joined

    def _prefill(self, tokens: list[int]) -> int:
        pending = _reuse_kv_cache(self._llama, tokens)
        if pending:
            self._eval(pending)
        return len(pending)

    def _decode(
        self,
        tokens: list[int],
        params: SamplingParams,
        grammar: str | None,
        max_tokens: int,
        stats: GenerationStats,
        stop: threading.Event,
        emit: Callable[[object], None],
        until: Callable[[str], bool] | None = None,
    ) -> None:
        """Worker thread: decode until done or `stop` is set; always emits `_END`."""
        llama = self._llama
        started = time.monotonic()
        try:
            stats.reused_prompt_tokens = _common_prefix(
                list(llama._input_ids[: llama.n_tokens]), tokens
            )
            seed = params.seed if params.seed is not None else random.randrange(2**31)
            reply = _ReplyTokens(llama, params.stop, max_tokens, stats, started, emit, until)
            sampler = self._token_sampler(params, grammar, seed)
            stats.finish_reason = "length"
            if sampler is None:
                stats.extra["decode_path"] = "generate"
                self._decode_with_generate(tokens, params, grammar, seed, reply, stop)
            else:
                stats.extra["decode_path"] = "lowlevel"
                speculate = self.speculate and params.temperature <= 0
                try:
                    self._decode_low_level(tokens, sampler, reply, stop, speculate)
                finally:
                    stats.extra["grammar_checks"] = sampler.grammar_checks
                    stats.extra["grammar_resamples"] = sampler.grammar_resamples
                    sampler.close()
            if stats.finish_reason != "cancelled":
                reply.flush()
            if llama.n_tokens > len(tokens):
                self._recent_replies.append(llama.input_ids[len(tokens) : llama.n_tokens].copy())
        finally:
            stats.total_s = time.monotonic() - started
            emit(_END)

    def _token_sampler(
        self, params: SamplingParams, grammar: str | None, seed: int
    ) -> TokenSampler | None:
        """A sampler for the low-level path, or None to decode with `Llama.generate`."""
        if self.decode_path != "lowlevel":
            return None
        llama = self._llama
        try:
            return TokenSampler(
                ctx=llama._ctx.ctx,
                vocab=llama._model.vocab,
                n_vocab=llama.n_vocab(),
                temperature=params.temperature,
                top_k=_TOP_K,
                top_p=params.top_p,
                min_p=_MIN_P,
                seed=seed,
                grammar=grammar,
                probe=self._probe if self.force_text else None,
                alternatives=params.alternatives,
            )
        except (SamplerInitError, AttributeError, TypeError, ValueError) as exc:
            log.warning("cannot build the low-level sampler (%s); using Llama.generate", exc)
            return None

    def _decode_low_level(
        self,
        tokens: list[int],
        sampler: TokenSampler,
        reply: _ReplyTokens,
        stop: threading.Event,
        speculate: bool = False,
    ) -> None:
        """Evaluate the uncached prompt suffix, then sample and evaluate token by token;
        forced text goes into the same batch as the token before it. With `speculate`
        (greedy decoding only), a draft of the next tokens (`_draft`) is evaluated in
        one batch with the token before it and kept as far as the model's own greedy
        choices agree with it (`_verify`): the same reply, in fewer model steps."""
        llama = self._llama
        # What the reply starts with, whatever the model says.
        tokens, text, forced = self._joined(tokens, sampler.forced_text())
        pending = _reuse_kv_cache(llama, tokens)
        if text:
            sampler.accept_text(text)
            if not self._took_forced(reply, text, forced):
                return
        while True:
            if stop.is_set():
                reply.stats.finish_reason = "cancelled"
                return
            if pending:
                self._eval(pending)
            token = sampler.sample()
            reply.note_alternatives(sampler.last_alternatives)
            if not reply.take(token):
                return
            sampler.accept(token)
            pending = [token]
            if not self._take_forced(sampler, reply, pending):
                return
            while speculate and len(pending) == 1 and not stop.is_set():
                draft = self._draft(token)
                if not draft:
                    break
                ended, pending = self._verify(token, draft, sampler, reply)
                if ended:
                    return
                token = pending[0]

    def _draft(self, token: int) -> list[int]:
        """Up to `_DRAFT_TOKENS` tokens that followed the last two tokens (those
        evaluated last, and `token`, not yet evaluated) where the same pair occurred
        before: latest first in this context (a reply copies its prompt: a value from a
        result, an argument's name from the schema, the call the model wrote earlier),
        then in the replies this engine wrote lately (the call format as the model
        spells it: ``"}}`` ``\n`` ``<`` ``/`` ``tool`` ``_call`` ``>``).
        """
        import numpy as np

        llama = self._llama
        n = llama.n_tokens
        if n < 1:
            return []
        ids = llama.input_ids[:n]
        previous = int(ids[n - 1])
        for source in (ids, *reversed(self._recent_replies)):
            if len(source) < 3:
                continue
            hits = np.flatnonzero((source[:-2] == previous) & (source[1:-1] == token))
            if len(hits):
                start = int(hits[-1]) + 2
                room = int(llama.n_ctx()) - n - 2  # the batch must fit the context
                if room <= 0:
                    return []
                return [int(t) for t in source[start : start + min(_DRAFT_TOKENS, room)]]
        return []

    def _verify(
        self, token: int, draft: list[int], sampler: TokenSampler, reply: _ReplyTokens
    ) -> tuple[bool, list[int]]:
        """Evaluate `token` and `draft` in one batch keeping every position's logits, then
        take the model's greedy choices one by one while they match the draft. Returns
        (the reply ended, [the next token to evaluate]). The cache keeps what was taken."""
        llama = self._llama
        n_past = llama.n_tokens
        batch = [token, *draft]
        llama._ctx.kv_cache_seq_rm(-1, n_past, -1)
        llama._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
        llama._ctx.decode(llama._batch)
        llama.input_ids[n_past : n_past + len(batch)] = batch
        llama.n_tokens = n_past + len(batch)
        llama._requires_eval = False
        self.evaluated_tokens += len(batch)
        stats = reply.stats.extra
        stats["drafted"] = stats.get("drafted", 0) + len(draft)
        for index in range(len(batch)):
            chosen = sampler.sample(index)
            reply.note_alternatives(sampler.last_alternatives)
            matched = index < len(draft) and chosen == draft[index]
            if not matched:
                llama.n_tokens = n_past + index + 1  # the rest of the draft is dropped
            if not reply.take(chosen):
                return True, []
            sampler.accept(chosen)
            if not matched:
                return False, [chosen]
            stats["drafted_kept"] = stats.get("drafted_kept", 0) + 1
        raise AssertionError("unreachable: the last position is never a draft token")

    def _eval(self, tokens: list[int]) -> None:
        """Evaluate `tokens`, counting them as progress.

        (Not in slices: evaluating a prompt in 64-token slices so the count grew
        during a prefill cost 1.8-2.7x its time at load 14-16: each evaluation
        synchronises the threads per graph node. The server's progress report
        also counts the CPU time the model spends.)
        """
        self._llama.eval(tokens)
        self.evaluated_tokens += len(tokens)

    def _forced_tokens(self, text: str) -> list[int]:
        """Forced text (never a tag: see `_kept`) as plain-text tokens."""
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=False))

    def _take_forced(self, sampler: TokenSampler, reply: _ReplyTokens, pending: list[int]) -> bool:
        """Append the grammar's forced text (if any) to `pending`, tokenized together with
        the token just sampled (`pending`'s last, not yet evaluated) when that splits at
        its end; nothing inside a tag (`_ReplyTokens.in_tag`). False when the reply ends
        here."""
        if reply.in_tag:
            return True
        forced_text = sampler.forced_text()
        if not forced_text:
            return True
        text, joined = self._kept(forced_text, self._llama.detokenize(pending[-1:]))
        if text:
            added = max(len(joined) - 1, 0)
            pending[-1:] = joined
        else:
            text, joined = self._kept(forced_text, b"")
            if not text:
                return True
            added = len(joined)
            pending.extend(joined)
        sampler.accept_text(text)
        return self._took_forced(reply, text, added)

    def _took_forced(self, reply: _ReplyTokens, text: str, n_tokens: int) -> bool:
        stats = reply.stats
        stats.extra["forced_tokens"] = stats.extra.get("forced_tokens", 0) + n_tokens
        return reply.take_text(text, n_tokens)

    def _kept(self, text: str, tail: bytes) -> tuple[str, list[int]]:
        """The part of forced `text` evaluated now, and its tokens (`tail`, the text of
        the token before it, tokenized with it when given; ("", []) when that does not
        split at the tail's end).

        A template tag (``</tool_call>``, ``<tool_call>``) is left to the model, every
        token of it (`_take_forced` forces nothing inside one): where a tag closes a
        call the model's next choice is another call or the end of its turn, made on
        its own spelling of the tag. Forced as ``<`` ``/tool`` ``_call`` (session 5),
        the 1.5B went on with ``>\n`` and further calls after a single lookup; forced
        as the template's special token ``</tool_call>`` it wants ``\n`` next and then
        ``<|endoftext|>``, which the grammar does not offer there (four calls for every
        question, session 6). Even with the tag left to it, the 1.5B's choice there
        follows the tokens before (see `LlamaEngine.force_text`).

        The last token of the run is left to the model: where the forced text ends
        a choice follows, and the model may write them as one token (``"}}`` and
        ``\n``, `` "`` and a value's first letters).
        """
        text = text.split("<")[0]
        if not text:
            return "", []
        tokens = self._forced_tokens(tail.decode("utf-8", "replace") + text)[:-1]
        kept = self._llama.detokenize(tokens)
        if not kept.startswith(tail) or len(kept) == len(tail):
            return "", []
        return kept[len(tail) :].decode("ascii"), tokens

    def _joined(self, tokens: list[int], text: str) -> tuple[list[int], str, int]:
        """The prompt's tokens followed by what is kept (`_kept`) of the forced `text`
        the reply starts with; that text, and how many tokens it adds.

        A prompt that ends in whitespace (a call step's ``"arguments": ``) has it
        tokenized with the forced text, as the chat template's text is: ``' {"'``
        rather than ``' '`` then ``'{"'``. The call then sits in the KV cache as the
        next request's prompt tokenizes it, so that request evaluates only what
        follows the call instead of the call again.
        """
        if not text:
            return tokens, "", 0
        tail = self._llama.detokenize(tokens[-1:]) if tokens else b""
        if tail and not tail.strip():
            kept, joined = self._kept(text, tail)
            if kept:
                return tokens[:-1] + joined, kept, max(len(joined) - 1, 0)
        kept, forced = self._kept(text, b"")
        return tokens + forced, kept, len(forced)

    def _decode_with_generate(
        self,
        tokens: list[int],
        params: SamplingParams,
        grammar: str | None,
        seed: int,
        reply: _ReplyTokens,
        stop: threading.Event,
    ) -> None:
        """The fallback: `Llama.generate`, the grammar in its sampler chain."""
        from llama_cpp import LlamaGrammar

        llama = self._llama
        llama.set_seed(seed)
        generator = llama.generate(
            tokens,
            top_k=_TOP_K,
            top_p=params.top_p,
            min_p=_MIN_P,
            temp=params.temperature,
            repeat_penalty=1.0,
            grammar=LlamaGrammar.from_string(grammar, verbose=False) if grammar else None,
        )
        try:
            for token in generator:
                self.evaluated_tokens += 1  # (the prompt's evaluation is not counted here)
                if stop.is_set():
                    reply.stats.finish_reason = "cancelled"
                    break
                if not reply.take(token):
                    break
        finally:
            generator.close()


class _ReplyTokens:
    """Turns sampled tokens into text pieces: end of turn, stop strings, `max_tokens`."""

    def __init__(
        self,
        llama: Any,
        stops: tuple[str, ...],
        max_tokens: int,
        stats: GenerationStats,
        started: float,
        emit: Callable[[object], None],
        until: Callable[[str], bool] | None = None,
    ) -> None:
        from llama_cpp import llama_vocab_is_eog

        self._llama = llama
        self._is_eog = llama_vocab_is_eog
        self._max_tokens = max_tokens
        self._started = started
        self._emit = emit
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stopper = _StopStrings(stops)
        self._until = until
        self._text = ""
        self._written = ""  # every piece of text so far, forced text included
        self.stats = stats
        #: Whether the text so far has a ``<`` not yet closed by ``>``: inside a tag.
        self.in_tag = False

    def _track_tags(self, text: str) -> None:
        opened, closed = text.rfind("<"), text.rfind(">")
        if opened > closed:
            self.in_tag = True
        elif closed > opened:
            self.in_tag = False

    def take(self, token: int) -> bool:
        """Record `token` and emit its text; False when the reply ends here."""
        stats = self.stats
        if stats.first_token_s is None:
            stats.first_token_s = time.monotonic() - self._started
        if self._is_eog(self._llama._model.vocab, token):
            stats.finish_reason = "stop"
            return False
        stats.completion_tokens += 1
        decoded = self._decoder.decode(self._llama.detokenize([token]))
        self._written += decoded
        self._track_tags(decoded)
        text, hit = self._stopper.feed(decoded)
        if text:
            self._emit(text)
        if hit:
            stats.finish_reason = "stop"
            return False
        if self._until is not None:
            self._text += text
            if self._until(self._text):
                stats.finish_reason = "stop"
                return False
        return stats.completion_tokens < self._max_tokens

    def take_text(self, text: str, n_tokens: int) -> bool:
        """Record forced `text` (`n_tokens` tokens, never an end of turn) and emit it;
        False when the reply ends here (a stop string, `until`, `max_tokens`)."""
        stats = self.stats
        if stats.first_token_s is None:
            stats.first_token_s = time.monotonic() - self._started
        stats.completion_tokens += n_tokens
        self._written += text
        self._track_tags(text)
        released, hit = self._stopper.feed(self._decoder.decode(text.encode("utf-8")))
        if released:
            self._emit(released)
        if hit:
            stats.finish_reason = "stop"
            return False
        if self._until is not None:
            self._text += released
            if self._until(self._text):
                stats.finish_reason = "stop"
                return False
        return stats.completion_tokens < self._max_tokens

    def note_alternatives(self, alternatives: list[tuple[int, float]]) -> None:
        """Record the most likely tokens of the step about to be taken (`alternatives`,
        token and probability) after the text written so far, in
        ``stats.extra["alternatives"]``: a list of ``{"after": text, "tokens": [[token
        text, p], ...]}``, one per sampled step, in order."""
        if not alternatives:
            return
        detokenize = self._llama.detokenize
        tokens = [[detokenize([t]).decode("utf-8", "replace"), p] for t, p in alternatives]
        steps = self.stats.extra.setdefault("alternatives", [])
        steps.append({"after": self._written, "tokens": tokens})

    def flush(self) -> None:
        """Emit what the UTF-8 decoder and the stop-string matcher still hold."""
        tail = self._stopper.flush(self._decoder.decode(b"", final=True))
        if tail:
            self._emit(tail)


def _log_prefill_failure(task: asyncio.Future[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("prefill failed: %s", task.exception())


def _byte_probe(llama: Any) -> ByteProbe | None:
    """The model's `ByteProbe`, or None (forcing off) when its vocabulary or this
    llama-cpp-python lacks what the probe needs."""
    from llama_cpp import llama_cpp as native

    if not hasattr(native, "llama_sampler_clone"):
        return None
    try:
        return ByteProbe.from_vocab(
            llama._model.vocab, llama.n_vocab(), lambda t: llama.detokenize([t])
        )
    except (AttributeError, TypeError, ValueError):
        return None


def _reuse_kv_cache(llama: Any, tokens: list[int]) -> list[int]:
    """Keep the KV cache's common prefix with `tokens`; return the tokens still to evaluate.

    Mirrors `Llama.generate`: when the whole prompt is cached and its logits
    are live, nothing is evaluated; when the prompt is a prefix of the
    cache, its last token is evaluated again to refresh the logits.
    """
    if llama.n_tokens > 0:
        prefix = _common_prefix(list(llama._input_ids[: llama.n_tokens]), tokens)
        whole_prompt = prefix == len(tokens)
        if whole_prompt and llama.n_tokens == len(tokens) and not llama._requires_eval:
            return []
        reuse = prefix - 1 if whole_prompt else prefix
        if reuse > 0 and llama._ctx.kv_cache_seq_rm(-1, reuse, -1):
            llama.n_tokens = reuse
            llama._requires_eval = True
            return tokens[reuse:]
    llama.reset()
    return tokens


class _StopStrings:
    """Cuts the text at the first stop string, holding back possible prefixes."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to release, whether a stop string was hit)."""
        if not self._stops:
            return text, False
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            return buf[: min(hits)], True
        keep = max((_overlap(buf, s) for s in self._stops), default=0)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self, text: str) -> str:
        released, hit = self.feed(text)
        if hit:
            return released
        out, self._held = released + self._held, ""
        return out


async def _wait_even_if_cancelled(worker: asyncio.Future[Any]) -> None:
    """Wait until the decoding thread ended; a cancellation meanwhile is re-raised after.

    The model must be idle before the lock is released, and a thread cannot
    be interrupted, only asked to stop (it checks between two tokens).
    """
    cancelled = False
    while not worker.done():
        try:
            await asyncio.wait({worker})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _overlap(text: str, stop: str) -> int:
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-n:]):
            return n
    return 0


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
