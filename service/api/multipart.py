"""Streaming multipart/form-data: small fields in memory, the file part spooled to disk.

Litestar's own form parsing also spools, but it cannot stop at a size limit or tell which part
is the file; this reader does both, so an oversize upload is refused without being stored.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from litestar import Request
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from service.errors import InvalidRequestError, PayloadTooLargeError
from service.sweeper import spool_dir

MAX_FIELD_BYTES = 64 * 1024
OVERHEAD_BYTES = 64 * 1024
"""Room for the multipart headers and the small fields beside the file."""


@dataclass
class SpooledPart:
    """A file part written to a temporary file; `discard()` removes it."""

    path: Path
    filename: str
    size: int = 0
    md5: str = ""

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class MultipartForm:
    fields: dict[str, str] = field(default_factory=dict)
    file: SpooledPart | None = None


def _too_large(max_file_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"File is too large: the maximum size is {max_file_bytes} bytes.", param="file", code="file_too_large"
    )


async def read_multipart(request: Request, *, file_field: str, max_file_bytes: int) -> MultipartForm:
    """Parse the request body, spooling the part named `file_field` to a temporary file.

    Raises:
        InvalidRequestError: the body is not multipart/form-data or is malformed.
        PayloadTooLargeError: the file part is larger than `max_file_bytes`.
    """
    content_type, options = request.content_type
    boundary = options.get("boundary")
    if content_type != "multipart/form-data" or not boundary:
        raise InvalidRequestError("Expected a multipart/form-data body.", param=file_field)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_file_bytes + OVERHEAD_BYTES:
        raise _too_large(max_file_bytes)

    form = MultipartForm()
    segment: MultipartSegment | None = None
    value = bytearray()
    out = None
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with PushMultipartParser(boundary, max_segment_count=32) as parser:
            async for chunk in request.stream():
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        segment = event
                        if event.name == file_field and event.filename is not None and form.file is None:
                            # Under the data dir (0600), where the sweeper finds what a crash left.
                            spool = spool_dir(request.app.state.settings)
                            fd, path = tempfile.mkstemp(prefix="ftserve-upload-", dir=spool)
                            out = os.fdopen(fd, "wb")
                            form.file = SpooledPart(Path(path), filename=event.filename or "upload")
                    elif event:
                        if out is not None and form.file is not None:
                            form.file.size += len(event)
                            if form.file.size > max_file_bytes:
                                raise _too_large(max_file_bytes)
                            out.write(event)
                            digest.update(event)
                        else:
                            value += event
                            if len(value) > MAX_FIELD_BYTES:
                                raise InvalidRequestError("A form field is too long.", param=segment and segment.name)
                    else:  # end of a part
                        if out is not None:
                            out.close()
                            out = None
                        elif segment is not None:
                            form.fields[segment.name] = value.decode(segment.charset or "utf-8", "replace")
                        value.clear()
                        segment = None
                if parser.closed:
                    break
    except (ParserError, ParserLimitReached) as exc:
        _cleanup(out, form)
        raise InvalidRequestError(f"Malformed multipart/form-data body: {exc}", param=file_field) from None
    except BaseException:
        _cleanup(out, form)
        raise
    if form.file is not None:
        form.file.md5 = digest.hexdigest()
    return form


def _cleanup(out, form: MultipartForm) -> None:  # type: ignore[no-untyped-def]
    if out is not None:
        out.close()
    if form.file is not None:
        form.file.discard()
