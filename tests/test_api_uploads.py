"""Uploads are streamed to disk under a size limit, and an interrupted one leaves nothing."""

from __future__ import annotations

import asyncio

import pytest
from service_support import BOUNDARY, request_from_chunks

from callmood.service.uploads import (
    UnsupportedUploadError,
    UploadError,
    UploadTooLargeError,
    receive_upload,
)


def multipart_body(file_bytes: bytes, filename: str = "call.wav", **fields: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: audio/wav\r\n\r\n".encode()
        + file_bytes
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def chunked(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def test_file_part_is_written_to_disk_with_the_form_fields(tmp_path):
    audio = bytes(range(256)) * 100
    body = multipart_body(audio, name="Call 7", tags="a,b")
    request, _ = request_from_chunks(chunked(body))
    upload = asyncio.run(receive_upload(request, tmp_path, max_bytes=1_000_000))
    assert upload.path.read_bytes() == audio
    assert upload.size_bytes == len(audio) and upload.filename == "call.wav"
    assert upload.fields == {"name": "Call 7", "tags": "a,b"}
    assert upload.content_type == "audio/wav"


def test_reading_stops_at_the_limit_and_the_partial_file_is_deleted(tmp_path):
    body = multipart_body(b"\x01" * 200_000)
    request, received = request_from_chunks(chunked(body))
    with pytest.raises(UploadTooLargeError, match="max_upload_mb"):
        asyncio.run(receive_upload(request, tmp_path, max_bytes=50_000))
    assert list(tmp_path.iterdir()) == []
    # The rest of the body was never read.
    assert len(received) < len(chunked(body)) / 2


def test_declared_length_over_the_limit_is_refused_before_reading(tmp_path):
    headers = {
        "content-type": f"multipart/form-data; boundary={BOUNDARY}",
        "content-length": str(500_000_000),
    }
    request, received = request_from_chunks([b"never read"], headers=headers)
    with pytest.raises(UploadTooLargeError):
        asyncio.run(receive_upload(request, tmp_path, max_bytes=200_000_000))
    assert received == []


def test_client_disconnect_mid_upload_leaves_nothing_behind(tmp_path):
    body = multipart_body(b"\x02" * 100_000)
    request, _ = request_from_chunks(chunked(body)[:5], disconnect_after=True)
    with pytest.raises(UploadError, match="disconnected"):
        asyncio.run(receive_upload(request, tmp_path, max_bytes=1_000_000))
    assert list(tmp_path.iterdir()) == []


def test_body_that_is_not_multipart_is_refused(tmp_path):
    request, _ = request_from_chunks([b"RIFF...."], headers={"content-type": "audio/wav"})
    with pytest.raises(UnsupportedUploadError, match="multipart"):
        asyncio.run(receive_upload(request, tmp_path, max_bytes=1000))


def test_two_file_parts_are_refused(tmp_path):
    one = multipart_body(b"abc")
    body = one.replace(f"--{BOUNDARY}--\r\n".encode(), b"") + multipart_body(b"def")
    request, _ = request_from_chunks([body])
    with pytest.raises(UploadError, match="one call per request"):
        asyncio.run(receive_upload(request, tmp_path, max_bytes=1000))
    assert list(tmp_path.iterdir()) == []
