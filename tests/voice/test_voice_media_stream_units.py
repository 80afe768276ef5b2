"""The media-stream pieces without models: the Twilio and Telnyx dialects, the paced sink
(what the caller hears is exactly what was written, a pause loses nothing, a clear drops the
rest at once), keypad tones. Runs on virtual time."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from web_helpers import serving

from fsm import MonotonicClock
from peripherals import g711
from voice_agent.transports.media_stream import (
    G711,
    LEAD_MS,
    DialectError,
    DigitPressed,
    MarkPlayed,
    MediaArrived,
    MediaStreamSink,
    StreamConnected,
    StreamStarted,
    StreamStopped,
    dtmf_tones,
)
from voice_agent.transports.telnyx import TelnyxDialect
from voice_agent.transports.twilio import TwilioDialect, stream_twiml

RATE = 8000


def test_twilio_messages_parse_into_the_neutral_ones() -> None:
    d = TwilioDialect()
    assert isinstance(
        d.parse('{"event": "connected", "protocol": "Call", "version": "1.0.0"}'), StreamConnected
    )
    start = d.parse(
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": "MZ1",
                "start": {
                    "accountSid": "AC1",
                    "streamSid": "MZ1",
                    "callSid": "CA1",
                    "tracks": ["inbound"],
                    "customParameters": {"From": "+15550100", "tier": "gold"},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
    )
    assert start == StreamStarted(
        call_id="CA1",
        stream_id="MZ1",
        encoding="mulaw",
        sample_rate=8000,
        custom={"From": "+15550100", "tier": "gold"},
        caller="+15550100",
        account="AC1",
    )
    payload = bytes(range(160))
    media = d.parse(
        json.dumps(
            {
                "event": "media",
                "media": {"track": "inbound", "payload": base64.b64encode(payload).decode()},
            }
        )
    )
    assert media == MediaArrived(payload)
    assert d.parse(
        '{"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": "7"}}'
    ) == DigitPressed("7")
    assert d.parse('{"event": "mark", "mark": {"name": "a3"}}') == MarkPlayed("a3")
    assert isinstance(d.parse('{"event": "stop", "stop": {}}'), StreamStopped)
    assert d.parse('{"event": "something-new"}') is None


def test_twilio_outbound_messages_have_the_documented_shape() -> None:
    d = TwilioDialect()
    assert json.loads(d.media("MZ1", b"\xff\x7f")) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": "/38="},
    }
    assert json.loads(d.mark("MZ1", "a1")) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "a1"},
    }
    assert json.loads(d.clear("MZ1")) == {"event": "clear", "streamSid": "MZ1"}
    twiml = stream_twiml("wss://agent.example.com/media", {"tier": "gold"}, "Busy.")
    assert (
        '<Stream url="wss://agent.example.com/media"><Parameter name="tier" value="gold"/></Stream>'
        in twiml
    )
    assert "<Say>Busy.</Say>" in twiml


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"no": "event"}',
        '{"event": "start", "start": {"streamSid": "MZ"}}',  # no callSid
        '{"event": "media", "media": {"payload": "***"}}',  # not base64
        '{"event": "start", "start": {"callSid": "CA", "streamSid": "MZ", "mediaFormat": {"encoding": "audio/opus"}}}',
    ],
)
def test_malformed_messages_are_dialect_errors_not_crashes(text: str) -> None:
    with pytest.raises(DialectError):
        TwilioDialect().parse(text)


def test_telnyx_is_only_another_serializer() -> None:
    d = TelnyxDialect()
    start = d.parse(
        json.dumps(
            {
                "event": "start",
                "stream_id": "st1",
                "start": {
                    "call_control_id": "v3:abc",
                    "from": "+15550100",
                    "to": "+15550199",
                    "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1},
                },
            }
        )
    )
    assert isinstance(start, StreamStarted)
    assert (start.call_id, start.stream_id, start.encoding, start.caller) == (
        "v3:abc",
        "st1",
        "alaw",
        "+15550100",
    )
    assert d.parse('{"event": "dtmf", "dtmf": {"digit": "#"}}') == DigitPressed("#")
    assert json.loads(d.clear("st1")) == {"event": "clear"}
    assert json.loads(d.media("st1", b"\x00"))["media"]["payload"] == "AA=="


def test_the_codec_round_trips_speech_level_audio() -> None:
    t = np.arange(RATE) / RATE
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for law in ("mulaw", "alaw"):
        codec = G711(law)
        y = codec.decode(codec.encode(x))
        assert len(y) == len(x) and np.max(np.abs(y - x)) < 0.02
        assert codec.encode(x) == g711.encode(x, law)


class Listener:
    """The provider's side of the sink: plays frames in order, honours clear."""

    def __init__(self, clock: MonotonicClock) -> None:
        self.clock = clock
        self.frames: list[tuple[float, np.ndarray]] = []
        self.play_end = 0.0
        self.clears: list[float] = []
        self.marks: list[str] = []

    async def send(self, text: str | bytes) -> None:
        msg = json.loads(text)
        now = self.clock.now()
        if msg["event"] == "media":
            x = g711.decode(base64.b64decode(msg["media"]["payload"]))
            start = max(now, self.play_end)
            self.play_end = start + len(x) / RATE
            self.frames.append((start, x))
        elif msg["event"] == "clear":
            self.clears.append(now)
            kept = []
            for start, x in self.frames:
                if start + len(x) / RATE <= now:
                    kept.append((start, x))
                elif start < now:
                    kept.append((start, x[: int((now - start) * RATE)]))
            self.frames = kept
            self.play_end = now
        elif msg["event"] == "mark":
            self.marks.append(msg["mark"]["name"])

    def heard(self) -> np.ndarray:
        return np.concatenate([x for _, x in self.frames]) if self.frames else np.zeros(0)


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * 300 * t) * np.linspace(0.2, 1, len(t))).astype(np.float32)


async def test_the_sink_paces_audio_a_little_ahead_and_a_pause_loses_nothing() -> None:
    clock = MonotonicClock()
    listener = Listener(clock)
    sink = MediaStreamSink(listener.send, TwilioDialect(), "MZ1", G711("mulaw"), clock=clock)
    audio = _tone(2.0)
    await sink.write(audio)
    await asyncio.sleep(0.5)
    ahead = listener.play_end - clock.now()
    assert 0 < ahead <= LEAD_MS / 1000 + 0.03  # not the whole answer at once
    played = sink.played_samples
    assert abs(played - 0.5 * RATE) <= 0.03 * RATE
    sink.pause()
    await asyncio.sleep(0.3)
    assert listener.clears, "a pause drops the provider's buffer"
    assert sink.played_samples == played or abs(sink.played_samples - played) < 0.03 * RATE
    sink.resume()
    await sink.wait_drained()
    await asyncio.sleep(0.1)
    heard = listener.heard()
    expected = g711.decode(g711.encode(audio))
    assert len(heard) == len(expected)  # nothing lost or repeated across the pause
    assert np.allclose(heard, expected, atol=1e-6)
    assert sink.played_samples == len(audio)
    assert listener.marks == ["a1"]
    await sink.aclose()


async def test_clear_drops_the_rest_at_once_and_counts_only_what_was_heard() -> None:
    clock = MonotonicClock()
    listener = Listener(clock)
    sink = MediaStreamSink(listener.send, TwilioDialect(), "MZ1", G711("mulaw"), clock=clock)
    await sink.write(_tone(3.0))
    await asyncio.sleep(1.0)
    dropped = sink.clear()
    await asyncio.sleep(0.05)
    assert listener.clears
    heard = sink.played_samples
    assert abs(heard - RATE) <= 0.03 * RATE and heard + dropped == 3 * RATE
    await asyncio.sleep(1.0)
    assert sink.played_samples == heard and len(listener.heard()) <= heard + 0.03 * RATE
    await sink.aclose()


async def test_a_pause_while_a_mark_goes_out_loses_no_audio_and_resumes_in_step() -> None:
    """The provider's socket takes a moment with the mark between two sentences, and the
    caller's voice pauses the agent just then. Before, the next sentence's first frame,
    taken before the mark went out, was sent just ahead of the clear and never again
    (20 ms lost), and stayed counted as unheard: the interrupt after it sent a second clear."""
    clock = MonotonicClock()
    listener = Listener(clock)
    paused = False

    async def send(text: str | bytes) -> None:
        nonlocal paused
        if json.loads(text)["event"] == "mark" and not paused:
            paused = True
            sink.pause()  # the input pauses the agent while the mark goes out
        await listener.send(text)

    sink = MediaStreamSink(send, TwilioDialect(), "MZ1", G711("mulaw"), clock=clock)
    first, second = _tone(0.3), _tone(0.6)
    await sink.write(first)
    await sink.write(second)
    await asyncio.sleep(0.6)
    assert paused and listener.clears
    sink.resume()
    await sink.wait_drained()
    await asyncio.sleep(0.1)
    heard = listener.heard()
    expected = g711.decode(g711.encode(np.concatenate([first, second])))
    assert len(heard) == len(expected) and np.allclose(heard, expected, atol=1e-6)
    assert sink.played_samples == len(expected)
    sink.pause()  # and a pause that finds nothing unheard sends no clear
    await asyncio.sleep(0.05)
    assert len(listener.clears) == 1
    await sink.aclose()


def test_keypad_tones_are_the_two_frequencies_of_each_key() -> None:
    tones = dtmf_tones("5", RATE)
    tone = tones[: int(0.1 * RATE)]
    spectrum = np.abs(np.fft.rfft(tone))
    freqs = np.fft.rfftfreq(len(tone), 1 / RATE)
    top = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert abs(top[0] - 770) < 15 and abs(top[1] - 1336) < 15
    assert len(dtmf_tones("1w2", RATE)) == round((0.2 + 0.5 + 0.2) * RATE)


def test_vonage_is_a_serializer_with_binary_audio_frames() -> None:
    from voice_agent.transports.media_stream import Linear16, codec_for
    from voice_agent.transports.vonage import VonageDialect, connect_ncco

    d = VonageDialect()
    start = d.parse(
        json.dumps(
            {
                "event": "websocket:connected",
                "content-type": "audio/l16;rate=16000",
                "call_uuid": "abc-123",
                "from": "447700900000",
                "to": "447700900001",
            }
        )
    )
    assert isinstance(start, StreamStarted)
    assert (start.call_id, start.encoding, start.sample_rate, start.caller) == (
        "abc-123",
        "l16",
        16000,
        "447700900000",
    )
    assert d.parse_binary(b"\x01\x00\xff\x7f") == MediaArrived(b"\x01\x00\xff\x7f")
    assert d.parse('{"event": "websocket:dtmf", "digit": "7", "duration": 250}') == DigitPressed(
        "7"
    )
    assert d.parse(
        d.mark("", "a1").replace('"action": "notify"', '"event": "websocket:notify"')
    ) == (MarkPlayed("a1"))
    assert d.parse('{"event": "websocket:cleared"}') is None
    assert json.loads(d.clear("")) == {"action": "clear"}
    assert d.media("", b"\x00\x01") == b"\x00\x01"  # binary frames out too
    for bad in ('{"event": "websocket:connected", "content-type": "audio/opus"}', "[]", "x"):
        with pytest.raises(DialectError):
            d.parse(bad)
    with pytest.raises(DialectError):
        d.parse_binary(b"\x00")  # half a sample
    pcm = Linear16()
    x = (0.5 * np.sin(np.arange(320) / 5)).astype(np.float32)
    assert np.max(np.abs(pcm.decode(pcm.encode(x)) - x)) < 1e-4
    assert isinstance(codec_for("l16"), Linear16) and isinstance(codec_for("mulaw"), G711)
    ncco = connect_ncco(
        "wss://a.example/media", uuid="u1", caller="1", called="2", busy_message="Busy."
    )
    assert ncco[0]["endpoint"][0] == {
        "type": "websocket",
        "uri": "wss://a.example/media",
        "content-type": "audio/l16;rate=16000",
        "headers": {"call_uuid": "u1", "from": "1", "to": "2"},
    }
    assert ncco[1] == {"action": "talk", "text": "Busy."}


async def test_a_whole_frame_dialect_gets_its_last_frame_padded_to_20_ms() -> None:
    from voice_agent.transports.media_stream import Linear16
    from voice_agent.transports.vonage import VonageDialect

    sent: list[str | bytes] = []

    async def send(frame: str | bytes) -> None:
        sent.append(frame)

    sink = MediaStreamSink(send, VonageDialect(), "", Linear16(), sample_rate=16000)
    await sink.write(np.full(16000 // 50 * 3 + 7, 0.1, dtype=np.float32))  # 3 frames and a bit
    await sink.wait_drained()
    await sink.aclose()
    frames = [f for f in sent if isinstance(f, bytes)]
    assert [len(f) for f in frames] == [640] * 4
    assert any(isinstance(f, str) and "notify" in f for f in sent)


async def test_the_answer_webhooks_connect_a_number_to_the_stream() -> None:
    import types

    import aiohttp

    from voice_agent.config import PhoneConfig
    from voice_agent.transports.phone_server import PhoneServer
    from voice_agent.worker import WorkerStats

    worker = types.SimpleNamespace(stats=WorkerStats(), max_calls=2)
    cfg = PhoneConfig(port=0, provider="vonage", public_url="wss://agent.example.com/media")
    async with PhoneServer(worker, cfg) as server, aiohttp.ClientSession() as http:  # type: ignore[arg-type]
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(f"{base}/ncco?uuid=u-1&from=4477&to=4488") as resp:
            ncco = await resp.json()
        async with http.post(f"{base}/ncco", json={"uuid": "u-2", "from": "1", "to": "2"}) as resp:
            posted = await resp.json()
        async with http.get(f"{base}/healthz") as resp:
            health = await resp.json()
    endpoint = ncco[0]["endpoint"][0]
    assert ncco[0]["action"] == "connect" and endpoint["type"] == "websocket"
    assert endpoint["uri"] == "wss://agent.example.com/media"
    assert endpoint["headers"] == {"call_uuid": "u-1", "from": "4477", "to": "4488"}
    assert posted[0]["endpoint"][0]["headers"]["call_uuid"] == "u-2"
    assert ncco[-1]["action"] == "talk"  # what a refused caller hears
    assert health == {
        "active": 0,
        "waiting": 0,
        "max_calls": 2,
        "served": 0,
        "refused": 0,
        "queued": 0,
        "not_served": 0,
        "failed": 0,
    }


async def test_telnyx_and_vonage_call_control_requests_have_the_documented_shape() -> None:
    from aiohttp import web

    from voice_agent.transports.provider_api import CallControlError
    from voice_agent.transports.telnyx import TelnyxRest
    from voice_agent.transports.vonage import VonageRest

    seen: list[tuple[str, str, str | None, object]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(
            (
                request.method,
                request.path,
                request.headers.get("Authorization"),
                await request.json(),
            )
        )
        if request.path.endswith("/refused"):
            return web.json_response({"errors": [{"detail": "Call has already ended"}]}, status=422)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with serving(app) as base:
        telnyx, vonage = TelnyxRest("KEY123", base), VonageRest("JWT456", base)
        try:
            await telnyx.send_dtmf("v3:c1", "12#")
            await telnyx.transfer("v3:c1", "+15550199")
            await telnyx.hang_up("v3:c1")
            await vonage.transfer("u-1", "+447700900002")
            await vonage.hang_up("u-1")
            with pytest.raises(
                CallControlError, match="Telnyx answered 422: Call has already ended"
            ):
                await telnyx._action("v3:c1", "refused", {})
        finally:
            await telnyx.aclose()
            await vonage.aclose()
    assert seen[:5] == [
        ("POST", "/v2/calls/v3:c1/actions/send_dtmf", "Bearer KEY123", {"digits": "12#"}),
        ("POST", "/v2/calls/v3:c1/actions/transfer", "Bearer KEY123", {"to": "+15550199"}),
        ("POST", "/v2/calls/v3:c1/actions/hangup", "Bearer KEY123", {}),
        (
            "PUT",
            "/v1/calls/u-1",
            "Bearer JWT456",
            {
                "action": "transfer",
                "destination": {
                    "type": "ncco",
                    "ncco": [
                        {
                            "action": "connect",
                            "endpoint": [{"type": "phone", "number": "447700900002"}],
                        }
                    ],
                },
            },
        ),
        ("PUT", "/v1/calls/u-1", "Bearer JWT456", {"action": "hangup"}),
    ]
