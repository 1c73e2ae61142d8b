"""Reading dataset files safely: bounded memory per line, one-line errors for unusable files,
and each record parsed with its line number.

JSONL is read in fixed-size blocks split at newlines, so a 2 GB single line is reported (not
loaded). A JSON array file (Alpaca's original shape) is the one thing read whole.

A Source holds one open file from start to end, so what is validated is what is stored even
when the file is replaced meanwhile; anything but a regular file (a FIFO would block forever)
is refused before a byte is read.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import orjson

from ..errors import InvalidInput
from ..facts import MIN_EXAMPLES
from ..tempfiles import shown
from .formats import FORMATS, Unconvertible, detect, to_canonical

BLOCK = 1 << 20
MAX_LINE_BYTES = 16 << 20  # an example this large is far beyond any model's context
MAX_ARRAY_BYTES = 1 << 30
BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
DETECT_LINES = 1000  # how far auto-detection looks for a parseable record

BLANK = object()  # a whitespace-only line


class BadLine(Exception):
    """A line that is not usable JSON; args = (code, message)."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message)
        self.code, self.message = code, message


class Source:
    """An opened dataset file: JSONL or JSON array, with a leading BOM noted and skipped.

    Use it as a context manager (or call close()): it keeps its file open until then.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.name = shown(path)
        self.file = _open(self.path, self.name)
        try:
            self._look(self.file.read(BLOCK))
        except BaseException:
            self.file.close()
            raise

    def _look(self, head: bytes) -> None:
        self.bom = head.startswith(BOM)
        if head.startswith(UTF16_BOMS):
            raise InvalidInput(f"{self.name}:1: the file is UTF-16 encoded", "Save it as UTF-8 and try again.")
        body = head[3:] if self.bom else head
        if b"\0" in body:
            raise self.binary(body.count(b"\n", 0, body.index(b"\0")) + 1)
        if not body.strip():
            raise InvalidInput(f"{self.name}:1: the file is empty", f"Add at least {MIN_EXAMPLES} examples, one JSON object per line.")
        self.is_array = body.lstrip().startswith(b"[")

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def size(self) -> int:
        """Bytes in the open file (not whatever the path names now)."""
        return os.fstat(self.file.fileno()).st_size

    def binary(self, line: int) -> InvalidInput:
        return InvalidInput(f"{self.name}:{line}: this looks like a binary file (it holds NUL bytes)", "Pass a UTF-8 JSONL or JSON file.")

    def blocks(self) -> Iterator[tuple[int, bytes]]:
        """(first line number, bytes holding whole lines): bounded memory, never one huge line."""
        line, carry = 1, b""
        f = self.file
        f.seek(3 if self.bom else 0)
        while chunk := f.read(BLOCK):
            if b"\0" in chunk:
                raise self.binary(line + (carry + chunk).count(b"\n", 0, len(carry) + chunk.index(b"\0")))
            cut = chunk.rfind(b"\n")
            if cut < 0:
                carry += chunk
                if len(carry) > MAX_LINE_BYTES:
                    raise self.too_long(line)
                continue
            if len(carry) + chunk.index(b"\n") > MAX_LINE_BYTES:
                raise self.too_long(line)  # later lines in the chunk are shorter than BLOCK
            block, carry = carry + chunk[: cut + 1], chunk[cut + 1 :]
            yield line, block
            line += block.count(b"\n")
        if len(carry) > MAX_LINE_BYTES:
            raise self.too_long(line)
        if carry:
            yield line, carry

    def too_long(self, line: int) -> InvalidInput:
        return InvalidInput(
            f"{self.name}:{line}: line {line} is longer than {MAX_LINE_BYTES >> 20} MB",
            "Put one example per line (JSONL); no model can train on an example this large.",
        )

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """Every line with its number (blank ones included)."""
        for first, block in self.blocks():
            yield from enumerate(split_lines(block), first)

    def records(self) -> Iterator[tuple[int, object]]:
        """(line, parsed value | BLANK | BadLine) for every record."""
        if self.is_array:
            yield from self._array_records()
            return
        for n, raw in self.lines():
            try:
                yield n, parse_line(raw)
            except BadLine as bad:
                yield n, bad

    def _array_records(self) -> Iterator[tuple[int, object]]:
        self.file.seek(3 if self.bom else 0)
        raw = self.file.read(MAX_ARRAY_BYTES + 1)
        if len(raw) > MAX_ARRAY_BYTES:
            raise InvalidInput(f"{self.name}: a JSON array file over 1 GB", "Convert it to JSONL (one example per line).")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            yield line, BadLine("invalid_utf8", f"invalid UTF-8 at byte {e.start + 1} of the file")
            return
        yield from _walk_array(text)

    def detect(self) -> tuple[str, int]:
        """(format, line it was decided on) from the first parseable record."""
        for i, (n, value) in enumerate(self.records()):
            if value is BLANK or isinstance(value, BadLine):
                if i < DETECT_LINES:
                    continue
                break
            fmt = detect(value)
            if fmt is None:
                raise InvalidInput(f"{self.name}:{n}: unknown format ({_describe(value)})", _FORMAT_HELP)
            return fmt, n
        return "openai", 1  # nothing parses: report the JSON errors against the main format


_FORMAT_HELP = (
    "Use OpenAI chat ('messages'), Alpaca ('instruction'/'output'), prompt/completion or "
    "ShareGPT ('conversations'), preference pairs (OpenAI's 'input'/'preferred_output'/"
    "'non_preferred_output' or TRL's 'prompt'/'chosen'/'rejected'), or name one with --format."
)


def _describe(value) -> str:
    if isinstance(value, dict):
        keys = ", ".join(sorted(map(str, value))[:6])
        return f"keys: {keys}" if keys else "an empty object"
    return f"a JSON {type(value).__name__}, not an object"


def _open(path: Path, name: str):
    """The file at path, opened for reading once; one-line errors for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    except FileNotFoundError:
        raise InvalidInput(f"{name}: no such file", "Check the path.") from None
    except PermissionError:
        raise InvalidInput(f"{name}: permission denied", "Make the file readable.") from None
    except OSError as e:
        raise InvalidInput(f"{name}: cannot read it ({e.strerror or e})", "Check the path.") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InvalidInput(f"{name} is a directory, not a dataset file", "Pass a .jsonl or .json file.")
        raise InvalidInput(f"{name} is not a regular file (a FIFO, device or socket)",
                           "Save the data to a .jsonl file and pass that.")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def split_lines(block: bytes) -> list[bytes]:
    parts = block.split(b"\n")
    if block.endswith(b"\n"):
        parts.pop()  # the empty string after the last newline is not a line
    return parts


def parse_line(raw: bytes):
    """One JSONL line -> value, BLANK, or raise BadLine with the column of a JSON error."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    if not raw.strip():
        return BLANK
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadLine("invalid_utf8", f"invalid UTF-8 at byte {e.start + 1}") from None
    try:
        return json.loads(text)  # slower, but says where; also takes what orjson refuses (NaN)
    except json.JSONDecodeError as e:
        raise BadLine("invalid_json", f"invalid JSON at column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise BadLine("invalid_json", _unreadable(e)) from None


def _unreadable(e: Exception) -> str:
    """What valid-looking JSON Python still cannot read: too deep, or a number too long."""
    if isinstance(e, RecursionError):
        return "JSON nested too deeply"
    return "a number with more digits than Python reads (4,300)"


def _walk_array(text: str) -> Iterator[tuple[int, object]]:
    """Elements of a JSON array text with the line each starts on; what follows the array is
    refused, never dropped."""
    decoder, ws = json.JSONDecoder(), " \t\r\n"
    pos = len(text) - len(text.lstrip(ws)) + 1  # just past "["
    line, counted = 1, 0
    while True:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if text.startswith("]", pos):
            break
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            yield e.lineno, BadLine("invalid_json", f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")
            return
        except (ValueError, RecursionError) as e:
            yield line, BadLine("invalid_json", _unreadable(e))
            return
        yield line, value
        while pos < len(text) and text[pos] in ws:
            pos += 1
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            bad = text.count("\n", 0, pos) + 1
            yield bad, BadLine("invalid_json", f"invalid JSON at line {bad}: expected ',' or ']' between array items")
            return
    yield from _after_array(text, pos + 1)


def _after_array(text: str, pos: int) -> Iterator[tuple[int, BadLine]]:
    rest = text[pos:].lstrip(" \t\r\n")
    if rest:
        end = text.count("\n", 0, pos) + 1
        line = end + text.count("\n", pos, len(text) - len(rest))
        yield line, BadLine("content_after_array", f"more content after the JSON array that ends on line {end}")


def read(path, fmt: str = "auto") -> Iterator[tuple[int, dict]]:
    """Stream (line number, canonical example); raise InvalidInput on the first unusable record."""
    with Source(path) as source:
        yield from _read(source, resolve_format(source, fmt))


def _read(source: Source, fmt: str) -> Iterator[tuple[int, dict]]:
    for n, value in source.records():
        if value is BLANK:
            continue
        if isinstance(value, BadLine):
            raise InvalidInput(f"{source.name}:{n}: {value.message}", "Run `ftm datasets validate` on it to see every problem.")
        try:
            yield n, to_canonical(value, fmt)
        except Unconvertible as bad:
            raise InvalidInput(f"{source.name}:{n}: {bad.message}", "Run `ftm datasets validate` on it to see every problem.") from None


def resolve_format(source: Source, fmt: str) -> str:
    """The format to read `source` as: fmt itself, or the detected one for "auto"."""
    if fmt == "auto":
        return source.detect()[0]
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}", f"Use one of: auto, {', '.join(FORMATS)}.")
    return fmt
