"""A timeline picture per turn: hand-written SVG, one time axis.

Rows, top to bottom: the user's speech, each LLM request (light: waiting for
the first token; dark: decoding; red outline: cancelled), each tool call
(coloured by outcome), and the agent's sentences (amber: cut off). Vertical
lines mark end of speech, first audio, answer audio and complete answer.
The axis is in ms relative to the turn's end of speech. Hover shows details.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from voice_agent.bench.metrics import Recording, TurnMetrics

WIDTH = 1100  # px, whole picture
LABEL_W = 190  # px, row-label column
ROW_H = 24  # px per row
TOP = 46  # px above the first row (marker labels)
BOTTOM = 34  # px below the last row (axis)
PAD_S = 0.3  # s of margin either side of the shown interval

OUTCOME_COLOURS = {
    "resolved": "#27ae60",
    "failed": "#c0392b",
    "timed_out": "#e67e22",
    "cancelled": "#95a5a6",
    "pending": "#8e44ad",
}
MARKERS = (  # (metric, label, colour)
    ("first_audio_ms", "first audio", "#2874a6"),
    ("answer_audio_ms", "answer", "#1e8449"),
    ("complete_answer_ms", "complete", "#7d3c98"),
)


@dataclass(frozen=True)
class _Bar:
    start: float
    end: float
    fill: str
    title: str
    stroke: str = "none"
    label: str = ""
    style: str = "solid"  # solid | speculative (dashed outline) | discarded (struck through)


def turn_svg(metrics: TurnMetrics, rec: Recording) -> str:
    """The SVG document for one turn of one run."""
    i = metrics.turn
    user = rec.user_turns[i]
    eos = user.end_of_speech
    later = [t.speech_start for t in rec.user_turns[i + 1 :] if not t.barge_in]
    window_end = later[0] if later else rec.session_end
    rows: list[tuple[str, list[_Bar]]] = []
    speech = [
        t
        for t in rec.user_turns
        if t.speech_start < window_end and t.end_of_speech >= user.speech_start
    ]
    rows.append(
        (
            "user",
            [
                _Bar(t.speech_start, t.end_of_speech, "#7f8c8d", t.text, label=t.text)
                for t in speech
            ],
        )
    )
    for d in rec.decodes:
        if d.start >= window_end or (d.end or d.start) < user.speech_start:
            continue
        first = d.first_token if d.first_token is not None else d.end or d.start
        end = d.end if d.end is not None else first
        stroke = "#c0392b" if d.cancelled else "none"
        what = d.text + (f" + calls {', '.join(d.calls)}" if d.calls else "")
        title = f"LLM #{d.index}: {what or '(empty)'}" + (" [cancelled]" if d.cancelled else "")
        rows.append(
            (
                f"LLM #{d.index}",
                [
                    _Bar(d.start, first, "#d6eaf8", title + " — waiting for first token", stroke),
                    _Bar(first, end, "#2e86c1", title, stroke, label=what),
                ],
            )
        )
    forks = [f for f in rec.forks if user.speech_start <= f.opened < window_end]
    if forks:
        rows.append(
            (
                "forks",
                [
                    _Bar(
                        f.opened,
                        f.closed if f.closed is not None else window_end,
                        "#d2b4de" if f.outcome == "adopted" else "#e5e7e9",
                        f"fork {f.fork_id} ({f.outcome}"
                        + (", whole" if f.whole else "")
                        + f", {f.tokens} tokens)",
                        "#7d3c98",
                        label=f"{f.fork_id} {f.outcome}",
                        style="solid" if f.outcome == "adopted" else "discarded",
                    )
                    for f in forks
                ],
            )
        )
    for c in metrics.tool_calls:
        start = eos + c["start_ms"] / 1000
        end = eos + c["end_ms"] / 1000 if c["end_ms"] is not None else window_end
        discarded = c["speculative"] and not c.get("adopted", False)
        spec = ""
        if c["speculative"]:
            spec = " (speculative, discarded)" if discarded else " (speculative, adopted)"
        title = f"{c['name']}({c['arguments']}) → {c['outcome']}{spec}"
        rows.append(
            (
                f"tool {c['name']}{'~' if spec else ''}",
                [
                    _Bar(
                        start,
                        end,
                        "#bdc3c7" if discarded else OUTCOME_COLOURS.get(c["outcome"], "#333"),
                        title,
                        "#7d3c98" if spec else "none",
                        label=("discarded " if discarded else "") + c["outcome"],
                        style="discarded" if discarded else "speculative" if spec else "solid",
                    )
                ],
            )
        )
    sentences = [s for s in rec.sentences if user.speech_start <= s.start < window_end]
    rows.append(
        (
            "agent",
            [
                _Bar(
                    s.start,
                    s.end,
                    "#f5b041" if s.interrupted else "#2874a6",
                    f"{s.heard}" + (f" [cut off; planned: {s.text}]" if s.interrupted else ""),
                    label=s.heard,
                )
                for s in sentences
            ],
        )
    )
    ends = [b.end for _, bars in rows for b in bars] + [eos]
    t0 = min(user.speech_start, eos) - PAD_S
    t1 = max(ends) + PAD_S
    return _render(metrics, rows, t0, t1, eos)


def _render(
    metrics: TurnMetrics, rows: Sequence[tuple[str, list[_Bar]]], t0: float, t1: float, eos: float
) -> str:
    height = TOP + ROW_H * len(rows) + BOTTOM
    plot_w = WIDTH - LABEL_W - 10

    def x(t: float) -> float:
        return round(LABEL_W + (t - t0) / (t1 - t0) * plot_w, 1)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{html.escape(f'{metrics.scenario} / {metrics.mode} / turn {metrics.turn}')}</title>",
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="6" y="14" font-weight="bold">{html.escape(metrics.scenario)} · {metrics.mode} · '
        f"turn {metrics.turn}: {html.escape(_short(metrics.user, 90))}</text>",
    ]
    for r, (label, bars) in enumerate(rows):
        y = TOP + r * ROW_H
        if r % 2:
            out.append(f'<rect x="0" y="{y}" width="{WIDTH}" height="{ROW_H}" fill="#f7f9f9"/>')
        out.append(
            f'<text x="6" y="{y + ROW_H * 0.65:.1f}">{html.escape(_short(label, 28))}</text>'
        )
        for bar in bars:
            w = max(1.0, x(bar.end) - x(bar.start))
            dash = ' stroke-dasharray="4 2"' if bar.style != "solid" else ""
            out.append(
                f'<rect x="{x(bar.start)}" y="{y + 3}" width="{w:.1f}" height="{ROW_H - 6}" rx="2" '
                f'fill="{bar.fill}" stroke="{bar.stroke}" stroke-width="1.5"{dash}>'
                f"<title>{html.escape(bar.title)}</title></rect>"
            )
            if bar.style == "discarded":  # struck through: nobody adopted it
                mid = y + ROW_H / 2
                out.append(
                    f'<line x1="{x(bar.start)}" y1="{mid}" x2="{x(bar.start) + w:.1f}" y2="{mid}" '
                    'stroke="#c0392b" stroke-width="2"/>'
                )
            if bar.label and w > 40:
                chars = int(w / 6)
                out.append(
                    f'<text x="{x(bar.start) + 3}" y="{y + ROW_H * 0.65:.1f}" fill="white" '
                    f'pointer-events="none">{html.escape(_short(bar.label, chars))}</text>'
                )
    bottom = TOP + ROW_H * len(rows)
    out.append(_marker(x(eos), "end of speech", "#000", TOP, bottom, 26, dashed=True))
    for n, (key, label, colour) in enumerate(MARKERS):
        value = getattr(metrics, key)
        if value is not None:
            out.append(
                _marker(
                    x(eos + value / 1000),
                    f"{label} {value:.0f} ms",
                    colour,
                    TOP,
                    bottom,
                    26 + 10 * ((n + 1) % 2),
                )
            )
    out.append(
        f'<line x1="{LABEL_W}" y1="{bottom}" x2="{WIDTH - 10}" y2="{bottom}" stroke="#444"/>'
    )
    step = _tick_step(t1 - t0)
    tick = (int((t0 - eos) / step) - 1) * step
    while eos + tick <= t1:
        if eos + tick >= t0:
            tx = x(eos + tick)
            out.append(f'<line x1="{tx}" y1="{bottom}" x2="{tx}" y2="{bottom + 4}" stroke="#444"/>')
            out.append(
                f'<text x="{tx}" y="{bottom + 16}" text-anchor="middle">{tick * 1000:.0f}</text>'
            )
        tick += step
    out.append(
        f'<text x="{WIDTH - 10}" y="{bottom + 30}" text-anchor="end" fill="#555">ms from end of speech'
        f" · dead air {metrics.dead_air_ms:.0f} ms · correct: {metrics.correct}</text>"
    )
    out.append("</svg>")
    return "\n".join(out)


def _marker(
    px: float, label: str, colour: str, top: int, bottom: int, label_y: int, dashed: bool = False
) -> str:
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return (
        f'<line x1="{px}" y1="{top - 4}" x2="{px}" y2="{bottom}" stroke="{colour}"{dash}/>'
        f'<text x="{px + 2}" y="{label_y}" fill="{colour}">{html.escape(label)}</text>'
    )


def _tick_step(span_s: float) -> float:
    for step in (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0):
        if span_s / step <= 14:
            return step
    return 60.0


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


def svg_name(metrics: TurnMetrics) -> str:
    """File name of a turn's picture: ``<scenario>__<mode>__turn<i>.svg``."""
    return f"{metrics.scenario}__{metrics.mode}__turn{metrics.turn}.svg"


def write_timelines(
    out_dir: Path, runs: Sequence[tuple[list[TurnMetrics], Recording]]
) -> list[Path]:
    """Write one SVG per (scenario, mode, turn) and an ``index.html`` linking them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    rows = []
    for turns, rec in runs:
        for m in turns:
            path = out_dir / svg_name(m)
            path.write_text(turn_svg(m, rec), encoding="utf-8")
            written.append(path)
            cells = (
                [m.scenario, m.mode, str(m.turn)]
                + [
                    "–" if v is None else f"{v:.0f}"
                    for v in (
                        m.first_audio_ms,
                        m.answer_audio_ms,
                        m.complete_answer_ms,
                        m.turn_done_ms,
                        m.dead_air_ms,
                    )
                ]
                + ["yes" if m.correct else "NO"]
            )
            link = f'<a href="{html.escape(path.name)}">timeline</a>'
            rows.append(
                "<tr>"
                + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                + f"<td>{link}</td></tr>"
            )
    head = [
        "scenario",
        "mode",
        "turn",
        "first audio",
        "answer",
        "complete",
        "done",
        "dead air",
        "correct",
        "",
    ]
    index = out_dir / "index.html"
    index.write_text(
        "<!doctype html><meta charset='utf-8'><title>voice-agent bench timelines</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}</style>"
        "<h1>Bench timelines</h1><p>Times in ms from the user's end of speech.</p><table>"
        "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "\n".join(rows) + "</table>\n",
        encoding="utf-8",
    )
    written.append(index)
    return written
