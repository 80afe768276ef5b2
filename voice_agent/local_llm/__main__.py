"""``python -m voice_agent.local_llm [--prepare [NAME]]``: list the local models, or assemble one."""

from __future__ import annotations

from .models import DEFAULT_MODEL, list_local_models, resolve_model


def main(argv: list[str] | None = None) -> int:
    """``python -m voice_agent.local_llm [--prepare [NAME]]``: list, or assemble once."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m voice_agent.local_llm")
    parser.add_argument(
        "--prepare", nargs="?", const=DEFAULT_MODEL, help="assemble and verify a model"
    )
    args = parser.parse_args(argv)
    if args.prepare:
        print(f"local model ready: {resolve_model(args.prepare)}")
        return 0
    for row in list_local_models():
        print(f"{row['name']:<40} {row['size']:>8}  {row['where']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
