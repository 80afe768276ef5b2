# The two commands of the README. Both install what is missing first.
.PHONY: run test lint bench setup

setup:
	./scripts/bootstrap

run: setup
	.venv/bin/voice-agent

chat: setup
	.venv/bin/voice-agent chat

test: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	./scripts/typecheck

bench: setup
	.venv/bin/voice-agent bench --modes sync,async --json out/bench/results.json
