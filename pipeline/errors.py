"""Errors a user can cause and fix.

Each carries one line that names the problem and the fix. The CLI prints that line and exits
non-zero; anything else that escapes is a programming error and keeps its traceback.

Every message passes through ``redact_text`` (no URL password is ever shown), has its control
characters escaped (``escape_controls``: one line, no terminal sequences) and is kept to
``MAX_MESSAGE`` characters; a value echoed in it should go through ``shown`` (``ECHO_LIMIT``).
"""

from __future__ import annotations

import errno
import re
from typing import Any

from .redact import redact_text

#: Characters of one echoed value: enough to recognise it, never a wall of text.
ECHO_LIMIT = 200
#: Characters of a whole message; longer ones keep their start and their end (the fix).
MAX_MESSAGE = 1000


#: C0 and C1 control characters (ESC paints the terminal; CR and LF forge another line).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\r``,
    ``\\n``), so that echoed keys, values and paths cannot paint the terminal or forge a line."""
    return CONTROL_CHARACTERS.sub(lambda m: repr(m.group())[1:-1], text)


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 4
    return f"{text[:head]}...[{len(text) - head - tail} characters left out]...{text[-tail:]}"


def shown(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters."""
    try:
        text = repr(value)
    except RecursionError:  # a self-referencing YAML structure
        text = f"<recursive {type(value).__name__}>"
    return shorten(text, limit)


#: errno of an OSError the user fixes in the environment -> the fix.
_OS_FIXES = {
    errno.ENOSPC: "free space on that disk or write somewhere else",
    errno.EDQUOT: "free space within your quota or write somewhere else",
    errno.EROFS: "that file system is read-only: write somewhere else",
    errno.EACCES: "check its permissions or write somewhere else",
    errno.EPERM: "check its permissions and flags (lsattr: immutable) or write somewhere else",
    errno.EISDIR: "that is a folder: name a file",
    errno.ENOTDIR: "part of that path is a file, not a folder: name a folder",
    errno.EEXIST: "a file is in the way: remove it or name another path",
    errno.ENAMETOOLONG: "use a shorter path",
}


def os_error_message(exc: OSError) -> str | None:
    """One line for an OSError the user can fix (disk full, read-only, a file where a folder is
    expected...), or None for any other (a programming error keeps its traceback)."""
    if exc.errno is None:
        return None
    fix = _OS_FIXES.get(exc.errno)
    if fix is None:
        return None
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or errno.errorcode.get(exc.errno, exc.errno)}: {fix}"


class UserError(Exception):
    """A problem in the user's input or environment, with the fix in the message."""

    def __init__(self, message: object = "") -> None:
        super().__init__(shorten(escape_controls(redact_text(str(message))), MAX_MESSAGE))


class ScheduleError(UserError):
    """A compression schedule that cannot be read, rewritten or applied to the model."""


class DataError(UserError):
    """A data set that is missing or not in an expected layout."""


class ModelError(UserError):
    """An unknown model name, or a checkpoint that does not fit the model."""


class BenchmarkError(UserError):
    """A model file or target that cannot be benchmarked."""


class QueueError(UserError):
    """The queue (Redis) cannot be reached or holds something unusable."""


class SweepError(UserError):
    """A sweep config that cannot be read or mapped onto the schedule."""


class OutputError(UserError):
    """An output path that cannot be written as asked (e.g. it names a device or a symlink)."""
