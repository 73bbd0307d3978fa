"""Receiving an uploaded call: the multipart body streamed to disk, size-limited.

The body is parsed as it arrives and the file part is written straight to a file,
so a 200 MB upload never sits in memory; reading stops at `max_bytes` (413). A
failed, oversized or interrupted upload leaves no file behind.

The client's file name is data, never a path: the file on disk gets a generated name
(`.upload-<random>`, then the job id), and the name is cleaned by `client_file_name`.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from callmood.errors import CallmoodError

FILE_FIELD = "file"
MAX_FILE_NAME_CHARS = 255  # fits the call's name (300) and source (500) columns
MAX_FIELD_BYTES = 64 * 1024
# Multipart framing and the small option fields come on top of the file itself.
FORM_OVERHEAD_BYTES = 1024 * 1024
#: A client that sends no byte of its upload for this long is cut off (408): a stalled or
#: slow-loris upload must not hold its connection and its half-written file for ever.
UPLOAD_IDLE_TIMEOUT_SECONDS = 30.0


class UploadError(CallmoodError):
    """The upload request is malformed (HTTP status in `status_code`)."""

    status_code = 400


class UploadTooLargeError(UploadError):
    """The uploaded file is larger than the configured `max_upload_mb`."""

    status_code = 413
    # The rest of the body is never read: the answer ends the connection, or the server
    # would go on reading (and discarding) what may be gigabytes to keep it alive.
    close_connection = True


class UploadStalledError(UploadError):
    """The client stopped sending its upload part way."""

    status_code = 408
    close_connection = True


class UnsupportedUploadError(UploadError):
    """The request is not a multipart form."""

    status_code = 415


def client_file_name(raw: str) -> str:
    """The name a client gave its file, as data to show: its last path part (after / or
    \\), without control characters (NUL, newlines), at most 255 characters."""
    last_part = re.split(r"[/\\]", raw)[-1]
    printable = "".join(char for char in last_part if unicodedata.category(char)[0] != "C")
    name = printable.strip()[:MAX_FILE_NAME_CHARS].strip()
    return name if name not in ("", ".", "..") else "upload"


@dataclass
class ReceivedUpload:
    """An upload saved to disk: the file, what the client called it, and the form fields."""

    path: Path
    filename: str
    content_type: str | None
    size_bytes: int
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        """Delete the saved file (the upload was rejected)."""
        self.path.unlink(missing_ok=True)


class _FormReader:
    """python-multipart callbacks that write the file part to disk and keep small fields."""

    def __init__(self, file_path: Path, max_bytes: int) -> None:
        self.file_path = file_path
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.content_type: str | None = None
        self.size_bytes = 0
        self._handle: BinaryIO | None = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part_name: str | None = None
        self._part_is_file = False
        self._field_value = bytearray()
        self.error: UploadError | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._part_name = None
        self._part_is_file = False
        self._field_value = bytearray()

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._part_name = name
        if b"filename" in options or name == FILE_FIELD:
            if name != FILE_FIELD:
                raise UploadError(f"unexpected file part {name!r}: send the call as 'file'")
            if self._handle is not None:
                raise UploadError("more than one 'file' part: upload one call per request")
            self._part_is_file = True
            # Only a name for the call: without NULs, which PostgreSQL text cannot store.
            filename = options.get(b"filename", b"upload").replace(b"\0", b"")
            self.filename = filename.decode("utf-8", "replace")
            content_type = self._headers.get(b"content-type")
            self.content_type = content_type.decode("latin-1") if content_type else None
            self._handle = self.file_path.open("wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part_is_file:
            assert self._handle is not None
            self.size_bytes += end - start
            if self.size_bytes > self.max_bytes:
                raise UploadTooLargeError(
                    f"upload {self.filename!r}: larger than the limit of "
                    f"{self.max_bytes / 1_000_000:g} MB (max_upload_mb)"
                )
            self._handle.write(data[start:end])
        else:
            self._field_value += data[start:end]
            if len(self._field_value) > MAX_FIELD_BYTES:
                raise UploadError(f"form field {self._part_name!r}: longer than 64 KiB")

    def _part_end(self) -> None:
        if self._part_is_file:
            assert self._handle is not None
            self._handle.flush()
        elif self._part_name:
            self.fields[self._part_name] = self._field_value.decode("utf-8", "replace")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


async def receive_upload(request: Request, directory: Path, max_bytes: int) -> ReceivedUpload:
    """Stream a multipart upload with a `file` part into `directory`.

    Parameters
    ----------
    request
        The incoming request (multipart/form-data).
    directory
        Folder for the saved file (created if missing).
    max_bytes
        Largest accepted file, in bytes; reading stops as soon as it is exceeded.

    Raises
    ------
    UploadTooLargeError
        The file (or the declared Content-Length) exceeds `max_bytes`.
    UnsupportedUploadError
        The body is not multipart/form-data.
    UploadStalledError
        No byte arrived for `UPLOAD_IDLE_TIMEOUT_SECONDS` (a stalled or slow-loris client).
    UploadError
        No file part, an empty file, a malformed body, or the client went away.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise UnsupportedUploadError(
            "upload must be multipart/form-data with the call in a part named 'file'"
        )
    declared = request.headers.get("content-length")
    # isascii: "²" is a digit to isdigit, not to int.
    if (
        declared
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > max_bytes + FORM_OVERHEAD_BYTES
    ):
        raise UploadTooLargeError(
            f"upload of {int(declared) / 1_000_000:.1f} MB: larger than the limit of "
            f"{max_bytes / 1_000_000:g} MB (max_upload_mb)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    file_path = directory / f".upload-{uuid.uuid4().hex}"
    reader = _FormReader(file_path, max_bytes)
    parser = MultipartParser(options[b"boundary"], reader.callbacks())
    try:
        async for chunk in _body_chunks(request):
            parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        reader.close()
        file_path.unlink(missing_ok=True)
        raise UploadError("upload interrupted: the client disconnected") from None
    except UploadError:
        reader.close()
        file_path.unlink(missing_ok=True)
        raise
    except Exception as error:  # python-multipart's parse errors
        reader.close()
        file_path.unlink(missing_ok=True)
        raise UploadError(f"malformed multipart upload: {error}") from None
    reader.close()
    if reader.filename is None:
        file_path.unlink(missing_ok=True)
        raise UploadError("no 'file' part in the upload: send the call as the form field 'file'")
    if reader.size_bytes == 0:
        file_path.unlink(missing_ok=True)
        raise UploadError(f"upload {reader.filename!r}: the file is empty")
    return ReceivedUpload(
        path=file_path,
        filename=client_file_name(reader.filename),
        content_type=reader.content_type,
        size_bytes=reader.size_bytes,
        fields=reader.fields,
    )


async def _body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; raises UploadStalledError after a silent pause."""
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(anext(chunks), UPLOAD_IDLE_TIMEOUT_SECONDS)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UploadStalledError(
                f"upload stalled: no data for {UPLOAD_IDLE_TIMEOUT_SECONDS:g} s"
            ) from None
        yield chunk
