"""Stream a stereo call to callmood as Twilio Media Streams would (docs/connectors-twilio.md).

    python examples/twilio_client.py examples/demo_call.flac \\
        --url ws://127.0.0.1:8000/api/connectors/twilio --token API_TOKEN [--fast]

The file's left channel is the caller (Twilio's ``inbound`` track, the customer), the
right one the agent (``outbound``), as in examples/demo_call.flac. The audio is turned
into 8 kHz mu-law and sent in the messages Twilio sends for a
``<Start><Stream track="both_tracks">``: ``connected``, ``start`` (with the
``<Parameter>`` values as ``customParameters``), one ``media`` message of 20 ms per track
in turn, and ``stop``; at real-time pace unless ``--fast``. ``--auth-token`` signs the
handshake with X-Twilio-Signature as Twilio does (the server's twilio_auth_token) instead
of passing the API token as a parameter. ``--inbound-only`` sends the caller's track alone,
as a ``<Connect><Stream>`` does.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Twilio sends 20 ms per media message: 160 mu-law bytes at 8 kHz.
CHUNK_BYTES = 160
CHUNK_SECONDS = 0.02


def twilio_signature(auth_token: str, url: str) -> str:
    """X-Twilio-Signature of a WebSocket handshake: base64 HMAC-SHA1 of the URL."""
    digest = hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def mulaw_tracks(path: Path, *, inbound_only: bool = False) -> dict[str, bytes]:
    """The file as Twilio's tracks: {"inbound": caller (left), "outbound": agent (right)}."""
    import soundfile

    from callmood.audio import encode_telephone

    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    tracks = {"inbound": encode_telephone(samples[:, 0], rate, "mulaw")}
    if not inbound_only and samples.shape[1] > 1:
        tracks["outbound"] = encode_telephone(samples[:, 1], rate, "mulaw")
    return tracks


def twilio_messages(
    tracks: dict[str, bytes],
    parameters: dict[str, str],
    *,
    stream_sid: str | None = None,
    call_sid: str | None = None,
    account_sid: str | None = None,
    stop: bool = True,
) -> Iterator[dict[str, Any]]:
    """Twilio's messages for a stream of `tracks`, shaped as in its WebSocket reference.

    Numbers are strings, as Twilio writes them; ``media`` messages alternate between the
    tracks, 20 ms each, ``chunk`` counting per track and ``timestamp`` in ms since the start.
    """
    stream_sid = stream_sid or "MZ" + secrets.token_hex(16)
    call_sid = call_sid or "CA" + secrets.token_hex(16)
    account_sid = account_sid or "AC" + secrets.token_hex(16)
    yield {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    sequence = 1
    yield {
        "event": "start",
        "sequenceNumber": str(sequence),
        "start": {
            "accountSid": account_sid,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": list(tracks),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": parameters,
        },
        "streamSid": stream_sid,
    }
    longest = max(len(audio) for audio in tracks.values())
    for index, offset in enumerate(range(0, longest, CHUNK_BYTES)):
        for track, audio in tracks.items():
            payload = audio[offset : offset + CHUNK_BYTES]
            if not payload:
                continue
            sequence += 1
            yield {
                "event": "media",
                "sequenceNumber": str(sequence),
                "media": {
                    "track": track,
                    "chunk": str(index + 1),
                    "timestamp": str(index * 20),
                    "payload": base64.b64encode(payload).decode("ascii"),
                },
                "streamSid": stream_sid,
            }
    if stop:
        yield {
            "event": "stop",
            "sequenceNumber": str(sequence + 1),
            "stop": {"accountSid": account_sid, "callSid": call_sid},
            "streamSid": stream_sid,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="stereo call: left = customer, right = agent")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/api/connectors/twilio")
    parser.add_argument("--token", help="callmood API token, sent as <Parameter name='token'>")
    parser.add_argument("--auth-token", help="Twilio Auth Token: sign with X-Twilio-Signature")
    parser.add_argument("--name", help="the call's name (parameter 'name')")
    parser.add_argument("--tags", help="comma-separated tags (parameter 'tags')")
    parser.add_argument("--agent", help="the agent's name or id (parameter 'agent')")
    parser.add_argument("--queue", help="the queue the call came through (parameter 'queue')")
    parser.add_argument("--inbound-only", action="store_true", help="send the caller only")
    parser.add_argument("--fast", action="store_true", help="send without real-time pacing")
    options = parser.parse_args(argv)
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    parameters = {
        key: value
        for key, value in [
            ("token", options.token),
            ("name", options.name or options.file.stem),
            ("tags", options.tags),
            ("agent", options.agent),
            ("queue", options.queue),
        ]
        if value
    }
    tracks = mulaw_tracks(options.file, inbound_only=options.inbound_only)
    headers = {}
    if options.auth_token:
        headers["X-Twilio-Signature"] = twilio_signature(options.auth_token, options.url)
    seconds = max(len(audio) for audio in tracks.values()) / 8000
    print(f"streaming {seconds:.1f} s of {'+'.join(tracks)} to {options.url}", flush=True)
    started = time.monotonic()
    with connect(options.url, additional_headers=headers) as websocket:
        try:
            for message in twilio_messages(tracks, parameters):
                if message["event"] == "media" and not options.fast:
                    # Real time: chunk n of each track leaves at n * 20 ms.
                    due = started + int(message["media"]["timestamp"]) / 1000
                    time.sleep(max(0.0, due - time.monotonic()))
                websocket.send(json.dumps(message))
            websocket.recv(timeout=120)  # the server sends nothing; it closes when stored
        except ConnectionClosed:
            pass
    code, reason = websocket.close_code, websocket.close_reason or ""
    print(f"closed with {code} {reason}".rstrip())
    return 0 if code == 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
