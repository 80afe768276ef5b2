"""The utterance machine's table is complete and its rendered documentation is current."""

from pathlib import Path

from voice_agent.voice.utterance import U
from voice_agent.voice.utterance_fsm import UTTERANCE_MACHINE


def test_rendered_voice_input_docs_are_current() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "voice_input_fsm.md").read_text()
    assert UTTERANCE_MACHINE.to_markdown() in doc, "run: voice-agent fsm --machine voice_input"
    assert UTTERANCE_MACHINE.to_mermaid() in doc


def test_every_state_and_event_pair_of_the_utterance_machine_has_an_outcome() -> None:
    for state in U:
        for event in UTTERANCE_MACHINE.events:
            assert UTTERANCE_MACHINE.transitions_for(state, event) or UTTERANCE_MACHINE.ignore_for(
                state, event
            ), (state, event)
