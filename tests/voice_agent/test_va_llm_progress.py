"""The LLM client and an endpoint's progress reports, on virtual time (AutojumpClock).

A real HTTP server on 127.0.0.1 (``voice_agent.bench.fault_server``) and the
real openai client; the server's delays and the client's deadlines run on the
same AutojumpClock, so the times asserted are virtual and exact.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from fsm import AutojumpClock
from voice_agent.bench.fault_server import ANSWER, FaultServer, answer, progressing, words
from voice_agent.config import LlmConfig
from voice_agent.llm import LlmClient, LlmError, Progressed, StreamFinished, TextDelta


def run(script: list, **config: Any) -> tuple[list, BaseException | None, list[dict], float]:
    """(items, error, request bodies, virtual seconds) of one streamed request."""
    clock = AutojumpClock()

    async def main() -> tuple[list, BaseException | None, list[dict], float]:
        got: list = []
        error: BaseException | None = None
        async with FaultServer(script, clock=clock) as server:
            cfg = {"max_retries": 0, **config}
            client = LlmClient(LlmConfig(base_url=server.base_url, model="m", **cfg), clock=clock)
            try:
                async for item in client.stream([{"role": "user", "content": "hi"}]):
                    got.append((clock.now(), item))
            except LlmError as exc:
                error = exc
            finally:
                await client.aclose()
            return got, error, server.requests, clock.now()

    return clock.run(main())


def test_progress_holds_off_the_first_token_deadline_while_it_grows():
    script = [("headers",), ("role",), *progressing(20.0, 1.0), *answer(ANSWER)[2:]]
    got, error, requests, _ = run(script, first_token_timeout_s=4.0, stall_timeout_s=3.0)
    assert error is None
    progress = [item for _, item in got if isinstance(item, Progressed)]
    assert [p.tokens for p in progress] == [32 * i for i in range(1, 21)]
    assert "".join(i.text for _, i in got if isinstance(i, TextDelta)) == ANSWER
    assert isinstance(got[-1][1], StreamFinished)


def test_without_progress_the_same_wait_fails_at_the_first_token_deadline():
    script = [("headers",), ("role",), ("sleep", 20.0), *answer(ANSWER)[2:]]
    got, error, _, seconds = run(script, first_token_timeout_s=4.0)
    assert isinstance(error, LlmError) and "within 4.0s" in str(error)
    assert seconds == 4.0


@pytest.mark.parametrize("progress", [True, False])
def test_the_request_asks_for_progress_only_when_configured(progress):
    _, error, requests, _ = run(answer(ANSWER), progress=progress)
    assert error is None
    assert requests[0].get("return_progress") is (True if progress else None)


def test_an_answer_under_way_is_not_cut_at_the_request_deadline():
    slow: list = []
    for step in words(ANSWER):
        slow += [("sleep", 1.5), step]  # 12 s for the answer, a word every 1.5 s
    script = [("headers",), ("role",), *slow, ("finish", "stop"), ("done",)]
    got, error, _, seconds = run(script, timeout_s=5.0, stall_timeout_s=3.0)
    assert error is None  # was: "the LLM request took longer than 5.0s" after 3 words
    assert "".join(i.text for _, i in got if isinstance(i, TextDelta)) == ANSWER
    assert seconds == pytest.approx(12.0)


def test_the_request_deadline_still_bounds_the_wait_for_the_first_output():
    script = [("headers",), ("role",), *progressing(30.0, 1.0), *answer(ANSWER)[2:]]
    got, error, _, seconds = run(script, timeout_s=10.0, stall_timeout_s=3.0)
    assert isinstance(error, LlmError) and "took longer than 10.0s" in str(error)
    assert seconds == 10.0


# A prewarm's answer comes this long after its request (real seconds), beyond the client's
# per-read backstop (timeout_s) and well within the prewarm's own allowance (4 x timeout_s).
PREWARM_ANSWER_S = 2.0


async def test_a_prewarm_slower_than_the_read_timeout_is_waited_for(caplog):
    body = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": "O"},
                }
            ],
        }  # fmt: skip
    ).encode()
    script = [("sleep", PREWARM_ANSWER_S), ("body", 200, "application/json", body)]
    async with FaultServer(script) as server:  # real time: the HTTP client's timeout is
        config = LlmConfig(base_url=server.base_url, model="m", timeout_s=PREWARM_ANSWER_S / 2)
        client = LlmClient(config)
        try:
            with caplog.at_level(logging.WARNING, logger="voice_agent.llm"):
                await client.prewarm([{"role": "system", "content": "You are Alex."}], None)
        finally:
            await client.aclose()
    assert len(server.requests) == 1 and server.requests[0]["max_tokens"] == 1
    assert "prewarm failed" not in caplog.text  # was: APITimeoutError after timeout_s
