"""A tool that presses keys on the line, its oracle scenario, and a DTMF decoder (tests)."""

from __future__ import annotations

import numpy as np

from voice_agent.bench.scenario import Scenario
from voice_agent.tools import ToolContext, ToolRegistry

DIGITS = "1234#"


def keypad_scenario() -> Scenario:
    """The caller asks for the order; the oracle calls press_keys (an IVR on the line)."""
    return Scenario.model_validate(
        {
            "name": "press_keys",
            "oracle": {"ttft_ms": 200, "tokens_per_s": 60},
            "tools": [
                {
                    "name": "press_keys",
                    "description": "Press keys on the phone line.",
                    "parameters": {
                        "type": "object",
                        "properties": {"digits": {"type": "string"}},
                        "required": ["digits"],
                    },
                    "result": {"pressed": DIGITS},
                }
            ],
            "turns": [
                {
                    "user": "Where is my order number 427?",
                    "calls": [{"tool": "press_keys", "arguments": {"digits": DIGITS}}],
                    "answer": [
                        {
                            "say": "I pressed the keys.",
                            "needs": ["press_keys"],
                            "expect": ["pressed"],
                        }
                    ],
                }
            ],
        }
    )


def keypad_tools() -> ToolRegistry:
    """The real tool: it asks the call to play DTMF (a write: run once, on the final turn)."""
    registry = ToolRegistry()

    @registry.tool(kind="write", description="Press keys on the phone line.")
    async def press_keys(digits: str, ctx: ToolContext) -> dict[str, str]:
        assert ctx.call is not None
        ctx.call.send_dtmf(digits)
        return {"pressed": digits}

    return registry


_KEYS = {
    (697, 1209): "1", (697, 1336): "2", (697, 1477): "3", (770, 1209): "4",
    (770, 1336): "5", (770, 1477): "6", (852, 1209): "7", (852, 1336): "8",
    (852, 1477): "9", (941, 1209): "*", (941, 1336): "0", (941, 1477): "#",
}  # fmt: skip


def decode_dtmf(x: np.ndarray, rate: int, block_s: float = 0.04) -> str:
    """Keys in ``x``: per block, the share of its energy at each keypad frequency (a DFT
    bin); a key where one low and one high frequency each hold a fifth of it."""
    n = int(block_s * rate)
    m = len(x) // n
    if m == 0:
        return ""
    blocks = x[: m * n].reshape(m, n).astype(np.float64)
    energy = np.sum(blocks**2, axis=1) + 1e-12
    freqs = (697, 770, 852, 941, 1209, 1336, 1477)
    basis = np.exp(-2j * np.pi * np.outer(np.arange(n), freqs) / rate)
    share = np.abs(blocks @ basis) ** 2 / (n * energy[:, None] / 2)
    keys: list[str] = []
    last = ""
    for row in share:
        low, high = int(np.argmax(row[:4])), 4 + int(np.argmax(row[4:]))
        key = _KEYS[(freqs[low], freqs[high])] if row[low] > 0.2 and row[high] > 0.2 else ""
        if key and key != last:
            keys.append(key)
        last = key
    return "".join(keys)
