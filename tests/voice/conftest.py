"""Fixtures for the audio-pipeline tests: the oracle with the order scenario, and a
private PulseAudio daemon with virtual devices (session-wide, stopped at the end)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from voice_helpers import OracleRig, Pulse, order_scenario, private_pulse, start_oracle


@pytest.fixture
async def order_oracle() -> AsyncIterator[OracleRig]:
    async for rig in start_oracle(order_scenario()):
        yield rig


# ---------------------------------------------------------------- PulseAudio virtual devices
@pytest.fixture(scope="session")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    """A private PulseAudio daemon (`voice_helpers.private_pulse`) for the whole session."""
    if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
        pytest.skip(
            "pulseaudio / pulseaudio-utils are not installed (scripts/bootstrap installs them)"
        )
    with private_pulse(tmp_path_factory.mktemp("pulse")) as daemon:
        yield daemon
