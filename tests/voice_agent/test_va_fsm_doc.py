"""The agent's table is valid and the rendered documentation matches it."""

from pathlib import Path

from voice_agent.agent_fsm import AGENT_MACHINE, S


def test_rendered_docs_are_current():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "agent_fsm.md").read_text()
    assert AGENT_MACHINE.to_markdown() in doc, (
        "run: voice-agent fsm > docs (see docs/agent_fsm.md header)"
    )
    assert AGENT_MACHINE.to_mermaid() in doc


def test_every_state_and_event_pair_has_an_outcome():
    for state in S:
        if state is S.ENDED:
            continue
        for event in AGENT_MACHINE.events:
            assert AGENT_MACHINE.transitions_for(state, event) or AGENT_MACHINE.ignore_for(
                state, event
            ), (state, event)
