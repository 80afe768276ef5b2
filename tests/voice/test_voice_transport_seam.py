"""The transport seam: a transport learns the agent's floor from the FSM's transition
notifications (every change, in order, none invented), gets the transcripts, and a
call-control request it cannot carry out is recorded in the ledger, never raised."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from voice_helpers import (
    ORDER_QUESTION,
    caller_recording,
    order_scenario,
    start_oracle,
    voice_config,
)

from ledger import entries as le
from voice_agent.call_control import Transfer
from voice_agent.transports.base import AgentStateChanged, TranscriptUpdated, TransportBase
from voice_agent.transports.call import Call, run_call
from voice_agent.transports.files import FileTransport

# real VAD/ASR/TTS threads: the wall clock, not virtual time
pytestmark = pytest.mark.realtime


class ObservedFileTransport(FileTransport):
    def __init__(self, samples: np.ndarray, rate: int) -> None:
        super().__init__(samples, rate, realtime=False)
        self.states: list[AgentStateChanged] = []
        self.transcripts: list[TranscriptUpdated] = []

    def state_changed(self, change: AgentStateChanged) -> None:
        self.states.append(change)

    def transcript_updated(self, update: TranscriptUpdated) -> None:
        self.transcripts.append(update)

    async def transfer(self, destination: str) -> None:  # as a transport without the means
        await TransportBase.transfer(self, destination)


async def test_a_transport_sees_each_floor_change_and_the_transcripts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    audio, _ = caller_recording([(0.5, ORDER_QUESTION, 1.0)], 4.0)
    transport = ObservedFileTransport(audio, 16000)
    calls: list[Call] = []
    controls: list[asyncio.Task[bool]] = []

    def on_call(call: Call) -> None:
        calls.append(call)
        controls.append(asyncio.ensure_future(call.perform(Transfer(destination="+15550100"))))

    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        result = await run_call(config, transport, tools=rig.tools, on_call=on_call)
    await transport.aclose()
    assert controls and await controls[0] is False

    (call,) = calls
    changes = [(c.previous, c.state) for c in transport.states]
    trace = [
        (r.source, r.target)
        for r in call.agent.trace
        if r.outcome in ("transition", "final") and r.source != r.target
    ]
    assert changes == trace  # every change, in order, as the FSM made it
    states = [c.state for c in transport.states]
    assert states[:2] == ["user_speaking", "thinking"] and states[-1] == "ended"
    assert "speaking" in states
    assert all(
        a.state == b.previous for a, b in zip(transport.states, transport.states[1:], strict=False)
    )

    user_finals = [t for t in transport.transcripts if t.role == "user" and t.final]
    assert len(user_finals) == 1 and "427" in user_finals[0].text
    heard = [t for t in transport.transcripts if t.role == "agent" and t.final]
    assert heard and "shipped" in heard[-1].text and not heard[-1].interrupted
    planned = [t for t in transport.transcripts if t.role == "agent" and not t.final]
    assert planned and all(heard[-1].segment_id != p.segment_id or p.text for p in planned)

    notes = [e.text for e in result.entries if isinstance(e, le.Note)]
    assert any("call control unsupported" in n and "transfer" in n for n in notes), notes
    assert isinstance(result.entries[-1], le.SessionEnded)
