"""pitelemetry's own small state files: meter totals, quota counts, retained-message
digests, the provisioning stamp.

They outlive the process, so they can hold anything a power cut, a full card or a person
left there. Reading never raises: a file that cannot be read or holds something the
caller's ``check`` refuses (a total of ``1e400``, a list where a table belongs, binary
bytes, a directory in the file's place) is moved aside to ``<name>.bad-<unix time>``,
logged once at error level, and the caller starts from zero, which it says in the log.
Writing replaces the file atomically (a temporary file, ``fsync``, ``rename``), so a
reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
# What a check may raise about a value it will not take.
REFUSED = (ValueError, TypeError, KeyError, OverflowError, AttributeError)


def quarantine(path: Path, reason: str, then: str) -> None:
    """Move ``path`` aside and log why, and what happens instead (``then``)."""
    target = path.with_name(f"{path.name}.bad-{int(time.time())}")
    try:
        path.rename(target)
    except OSError as exc:
        log.error("%s: %s (could not move it aside: %s); %s", path, reason, exc.strerror, then)
        return
    log.error("%s: %s; moved it to %s; %s", path, reason, target.name, then)


def read_text(path: Path, then: str) -> str | None:
    """The UTF-8 text of ``path``; ``None`` when there is none or it is not text (then
    moved aside, see the module docstring)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        quarantine(path, "not text", then)
    except IsADirectoryError:
        quarantine(path, "a directory where a file belongs", then)
    except OSError as exc:
        log.error("%s: cannot read it (%s); %s", path, exc.strerror or exc, then)
    return None


def read_json(path: Path, check: Callable[[Any], T], then: str) -> T | None:
    """``check(data)`` for the JSON in ``path``, or ``None`` when the file is missing or
    refused. ``check`` returns the value the caller keeps and raises one of
    :data:`REFUSED` for data it will not take."""
    text = read_text(path, then)
    if text is None:
        return None
    try:
        return check(json.loads(text))
    except REFUSED as exc:
        quarantine(path, f"unusable content ({type(exc).__name__}: {exc})", then)
        return None
    except RecursionError:
        quarantine(path, "unusable content (nested too deep)", then)
        return None


def write_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace ``path`` with ``text``: written to a new temporary file, ``fsync``-ed
    (unless not ``durable``: a tmpfs), then renamed over it. Raises ``OSError``.

    The temporary file gets an unpredictable name and is created with ``O_EXCL``
    (``mkstemp``), so a symbolic link planted in the directory by someone who can write
    there is never followed, not even when the daemon runs as root; the rename replaces
    a link at ``path`` itself instead of writing through it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        Path(name).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(name).unlink()
        raise


def finite_int(value: Any, *, minimum: int = 0) -> int:
    """``value`` as an int, if it is a whole number of at least ``minimum`` that JSON
    could have written (no booleans, no infinities); raises ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    number = int(value)  # OverflowError for inf, ValueError for nan
    if number != value or number < minimum:
        raise ValueError(f"{value!r} is not a whole number >= {minimum}")
    return number
