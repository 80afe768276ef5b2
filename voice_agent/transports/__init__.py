"""Ways into the engine: text chat, audio console, audio files, LiveKit rooms."""
