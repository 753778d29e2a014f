"""Reading a file the operator hands the kit (a stack file, calibration.yaml, a rehearsal's
results) as hostile input: a regular file, read no further than a bound.

A FIFO blocks a reader forever, /dev/urandom and /dev/zero never end and a directory is not text:
the file is opened without blocking, judged by what it is (fstat of the open file, so a symlink is
judged by its target and nothing can swap it in between), and at most `limit` bytes are read.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class Refused(Exception):
    """Why a file was not read: `expected` qualifies what the caller expected ("" when only the
    finding needs saying), `found` is what was there."""

    def __init__(self, expected: str, found: str):
        self.expected, self.found = expected, found
        super().__init__(f"{expected}: {found}")

    def describe(self, what: str) -> str:
        """`what` the caller expected, with this refusal's qualifier."""
        return f"{what}, {self.expected}" if self.expected else what


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them; Refused otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Refused("", "no such file") from None
    except OSError as err:
        raise Refused("", err.strerror or str(err)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise Refused("a regular file", next((name for test, name in _KINDS if test(mode)), "not one"))
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise Refused("", err.strerror or str(err)) from None
    finally:
        os.close(fd)
    if size > limit:
        raise Refused(f"at most {limit:,} bytes", "more")
    return b"".join(chunks)
