"""The benchmark harness: scenario files, the scripted oracle LLM, simulated
peripherals, metrics, timelines and the runner (``voice-agent bench``).

Import the pieces from their modules (``voice_agent.bench.runner`` pulls in
the engine; the others do not).
"""
