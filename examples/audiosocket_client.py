"""Stream a call to callmood's AudioSocket listener the way Asterisk does.

    callmood serve --audiosocket 127.0.0.1:9092          # in one terminal
    python examples/audiosocket_client.py                 # in another: demo_call.flac's customer
    python examples/audiosocket_client.py call.wav --channel 1 --fast --hangup

AudioSocket carries one channel: this sends the file's customer channel (channel 0, the
left one, of examples/demo_call.flac), resampled to 8 kHz signed linear 16-bit, as the
`AudioSocket()` dialplan application does: a UUID message, then one 20 ms audio message
(320 bytes) every 20 ms, then it closes the socket, which is how Asterisk ends a call
(`--hangup` sends the 0x00 hangup message first). `--fast` sends without waiting. The
call then appears in the dashboard, named "audiosocket <uuid>". Only numpy, soundfile
and soxr are needed (callmood's own dependencies).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import soundfile
import soxr

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_AUDIO_8K = 0x10
RATE = 8000
PACKET_SECONDS = 0.02  # Asterisk's 20 ms frames: 160 samples, 320 bytes at 8 kHz
DEMO_CALL = Path(__file__).with_name("demo_call.flac")


def message(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket message: kind byte, 16-bit big-endian length, payload."""
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


def telephone_pcm(path: Path, channel: int = 0, seconds: float | None = None) -> bytes:
    """One channel of a file as 8 kHz signed linear 16-bit little-endian bytes."""
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if not 0 <= channel < audio.shape[1]:
        raise SystemExit(f"{path} has {audio.shape[1]} channel(s); --channel {channel} is not one")
    samples = audio[:, channel]
    if seconds is not None:
        samples = samples[: int(seconds * rate)]
    samples = soxr.resample(samples, rate, RATE) if rate != RATE else samples
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def stream_call(
    address: tuple[str, int],
    pcm: bytes,
    call_uuid: uuid.UUID,
    *,
    fast: bool = False,
    hangup: bool = False,
) -> int:
    """Send one call; returns the number of audio messages sent."""
    packet_bytes = int(PACKET_SECONDS * RATE) * 2
    packets = [pcm[at : at + packet_bytes] for at in range(0, len(pcm), packet_bytes)]
    with socket.create_connection(address, timeout=10) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Asterisk does
        connection.sendall(message(KIND_UUID, call_uuid.bytes))
        started = time.monotonic()
        for index, packet in enumerate(packets):
            if not fast:
                # Pace by the clock, not by sleeps, so delays do not add up over a call.
                time.sleep(max(0.0, started + index * PACKET_SECONDS - time.monotonic()))
            connection.sendall(message(KIND_AUDIO_8K, packet))
        if hangup:
            connection.sendall(message(KIND_HANGUP))
    return len(packets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEMO_CALL, help="call audio file")
    parser.add_argument("--address", default="127.0.0.1:9092", help="HOST:PORT of callmood")
    parser.add_argument("--channel", type=int, default=0, help="channel to send (0 = left)")
    parser.add_argument("--seconds", type=float, help="send only the first N seconds")
    parser.add_argument("--uuid", type=uuid.UUID, default=None, help="call UUID (random)")
    parser.add_argument("--fast", action="store_true", help="do not wait 20 ms per packet")
    parser.add_argument("--hangup", action="store_true", help="send 0x00 before closing")
    options = parser.parse_args(argv)
    host, _, port = options.address.rpartition(":")
    call_uuid = options.uuid or uuid.uuid4()
    pcm = telephone_pcm(options.file, options.channel, options.seconds)
    print(f"streaming {len(pcm) / 2 / RATE:.1f} s of {options.file.name} as call {call_uuid}")
    try:
        sent = stream_call(
            (host.strip("[]"), int(port)),
            pcm,
            call_uuid,
            fast=options.fast,
            hangup=options.hangup,
        )
    except OSError as error:
        print(f"error: cannot stream to {options.address}: {error}", file=sys.stderr)
        return 1
    print(f"sent {sent} audio messages; the call is stored as 'audiosocket {call_uuid}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
