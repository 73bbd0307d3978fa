"""Stream a stereo call to callmood as Genesys Cloud AudioHook Monitor does.

    python examples/audiohook_client.py ws://127.0.0.1:8000/api/connectors/audiohook \\
        --api-key KEY [--client-secret BASE64] [--fast] [examples/demo_call.flac]

The file's left channel is the customer (AudioHook's `external` channel), the right one
the agent (`internal`). The client signs its WebSocket request (HTTP message signature,
HMAC-SHA256) when given the client secret, offers stereo PCMU at 8 kHz in `open`, sends
the audio in 100 ms binary frames (external and internal samples interleaved), pings every
5 s, and ends with `close` / `closed`, at real-time pace unless --fast. Needs callmood
installed (for decoding the file and signing) and websockets (a uvicorn[standard] dependency).
"""

from __future__ import annotations

import argparse
import base64
import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from websockets.sync.client import ClientConnection, connect

from callmood.audio import encode_telephone, load_audio
from callmood.service.routes.audiohook import format_duration, signature_headers

FRAME_SECONDS = 0.1
PING_SECONDS = 5.0


def audiohook_headers(
    url: str, api_key: str, client_secret: bytes | None, session_id: str, organization_id: str
) -> dict[str, str]:
    """The handshake headers Genesys sends, signed (HMAC-SHA256) when given the secret."""
    headers = {
        "Audiohook-Organization-Id": organization_id,
        "Audiohook-Session-Id": session_id,
        "Audiohook-Correlation-Id": str(uuid.uuid4()),
        "X-API-KEY": api_key,
    }
    if client_secret is not None:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers |= signature_headers(
            request_target=target,
            authority=parts.netloc,
            headers=headers,
            api_key=api_key,
            client_secret=client_secret,
        )
    return headers


def open_parameters(organization_id: str, conversation_id: str) -> dict:
    """The `open` message's parameters: stereo PCMU at 8 kHz first, then each channel alone."""
    return {
        "organizationId": organization_id,
        "conversationId": conversation_id,
        "participant": {
            "id": str(uuid.uuid4()),
            "ani": "+1-555-555-1234",
            "aniName": "Demo Customer",
            "dnis": "+1-800-555-6789",
        },
        "media": [
            {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000},
            {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
            {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000},
        ],
        "language": "en-US",
    }


class AudioHookMessages:
    """The client's side of one session's text messages: `seq`, `serverseq` and `position`."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.seq = 0
        self.serverseq = 0
        self.sent_samples = 0  # per channel, for `position`

    def message(self, kind: str, parameters: dict) -> str:
        """The next client message of `kind`."""
        self.seq += 1
        return json.dumps(
            {
                "version": "2",
                "id": self.session_id,
                "type": kind,
                "seq": self.seq,
                "serverseq": self.serverseq,
                "position": format_duration(self.sent_samples / 8000),
                "parameters": parameters,
            }
        )

    def received(self, text: str | bytes) -> dict:
        """A server message, parsed; its `seq` is the next message's `serverseq`."""
        reply = json.loads(text)
        self.serverseq = reply["seq"]
        return reply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="ws(s)://host:port/api/connectors/audiohook")
    parser.add_argument("audio", nargs="?", default="examples/demo_call.flac", type=Path)
    parser.add_argument("--api-key", required=True, help="the X-API-KEY (audiohook_api_key)")
    parser.add_argument("--client-secret", help="base64 client secret: sign the request")
    parser.add_argument("--fast", action="store_true", help="send as fast as possible")
    options = parser.parse_args()

    # Left = customer = external, right = agent = internal; 8 kHz mu-law, interleaved.
    audio = load_audio(options.audio, channels=[0, 1])
    payload = encode_telephone(audio.samples, audio.sample_rate, "mulaw")
    session_id, organization_id = str(uuid.uuid4()), str(uuid.uuid4())
    secret = base64.b64decode(options.client_secret) if options.client_secret else None
    headers = audiohook_headers(options.url, options.api_key, secret, session_id, organization_id)
    messages = AudioHookMessages(session_id)

    def receive(websocket: ClientConnection, expected: str) -> dict:
        while True:
            reply = messages.received(websocket.recv(timeout=30))
            if reply["type"] == "disconnect":
                raise SystemExit(f"server disconnected: {reply['parameters']}")
            if reply["type"] == expected:
                return reply

    with connect(options.url, additional_headers=headers, max_size=2**20) as websocket:
        websocket.send(
            messages.message("open", open_parameters(organization_id, str(uuid.uuid4())))
        )
        opened = receive(websocket, "opened")
        print("opened:", json.dumps(opened["parameters"]["media"]))
        frame_bytes = round(FRAME_SECONDS * 8000) * 2
        started = time.monotonic()
        last_ping = started
        for offset in range(0, len(payload), frame_bytes):
            frame = payload[offset : offset + frame_bytes]
            websocket.send(frame)
            messages.sent_samples += len(frame) // 2
            if not options.fast:
                time.sleep(max(0.0, started + messages.sent_samples / 8000 - time.monotonic()))
            if time.monotonic() - last_ping >= PING_SECONDS:
                websocket.send(messages.message("ping", {}))
                last_ping = time.monotonic()
        websocket.send(messages.message("close", {"reason": "end"}))
        receive(websocket, "closed")
    print(
        f"sent {messages.sent_samples / 8000:.1f} s of audio; "
        "the call is on the dashboard's Calls page"
    )


if __name__ == "__main__":
    main()
