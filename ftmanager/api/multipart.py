"""Request bodies read without holding them in memory: spooled to disk, parsed through mmap.

The stdlib's cgi module is gone in newer Pythons and email.parser reads everything into
memory; uploads here reach 512 MB per file and 64 MB per part, so the body goes to a file
first and the parts are located by searching the mapped file for the boundary.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass
class Part:
    """One field of a multipart body, located in the spooled file."""

    name: str
    filename: str | None
    offset: int  # where the part's content starts in the spooled body
    length: int
    value: str | None = None  # the decoded content of small non-file fields


def spool(rfile, headers, dest: Path, limit: int | None = None) -> int:
    """Copy a request body (Content-Length or chunked) from rfile to dest; return its size.

    ValueError once the body passes `limit` bytes (a chunked body declares no length).
    """
    total = 0
    with open(dest, "wb") as out:
        for chunk in iter_body(rfile, headers):
            out.write(chunk)
            total += len(chunk)
            if limit is not None and total > limit:
                raise ValueError(f"The request body is over this server's limit of {limit} bytes")
    return total


def iter_body(rfile, headers):
    """The request body in chunks, whichever way the client framed it."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        yield from _chunked(rfile)
        return
    left = int(headers.get("Content-Length") or 0)
    while left > 0:
        chunk = rfile.read(min(CHUNK, left))
        if not chunk:
            raise ConnectionError("the client closed the connection mid-body")
        left -= len(chunk)
        yield chunk


def _chunked(rfile):
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline().strip():  # trailers, then the blank line
                pass
            return
        while size > 0:
            chunk = rfile.read(min(CHUNK, size))
            size -= len(chunk)
            yield chunk
        rfile.readline()


def boundary_of(content_type: str) -> bytes | None:
    """The boundary a multipart Content-Type header declares."""
    match = re.search(r'boundary="?([^";]+)"?', content_type or "")
    return match.group(1).encode() if match else None


def parse(path: Path, boundary: bytes) -> dict[str, Part]:
    """The parts of a multipart/form-data body spooled at path, by field name."""
    parts: dict[str, Part] = {}
    delimiter = b"--" + boundary
    with open(path, "rb") as fh, _mapped(fh) as mm:
        pos = mm.find(delimiter)
        while pos >= 0 and mm[pos + len(delimiter):pos + len(delimiter) + 2] != b"--":
            head_start = pos + len(delimiter) + 2
            head_end = mm.find(b"\r\n\r\n", head_start)
            end = mm.find(b"\r\n" + delimiter, head_end + 4)
            if head_end < 0 or end < 0:
                raise ValueError("a malformed multipart body")
            part = _part(mm[head_start:head_end].decode("utf-8", "replace"), head_end + 4, end)
            if part.filename is None and part.length < 65536:
                part.value = mm[part.offset:end].decode("utf-8", "replace")
            parts[part.name] = part
            pos = end + 2
    return parts


def _mapped(fh):
    import contextlib

    if fh.seek(0, 2) == 0:
        return contextlib.nullcontext(b"")
    return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def _part(head: str, start: int, end: int) -> Part:
    disposition = next((line for line in head.split("\r\n")
                        if line.lower().startswith("content-disposition")), "")
    name = re.search(r'\bname="([^"]*)"', disposition)
    filename = re.search(r'\bfilename="([^"]*)"', disposition)
    return Part(name.group(1) if name else "", filename.group(1) if filename else None,
                start, end - start)


def copy_range(src: Path, offset: int, length: int, dest: Path) -> None:
    """Copy length bytes from offset in src to a new file dest, a chunk at a time."""
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        fin.seek(offset)
        while length > 0:
            chunk = fin.read(min(CHUNK, length))
            if not chunk:
                break
            fout.write(chunk)
            length -= len(chunk)
