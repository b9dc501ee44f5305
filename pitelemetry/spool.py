"""The durable spool: batches InfluxDB has not acknowledged, on disk, oldest first.

Layout: ``<state_dir>/spool/<sequence>.seg`` segment files, each a run of records::

    magic "PTS1" | payload length u32 | CRC-32 u32 | lines u32 | flags u8
    | clock offset i64 | boot id 16 bytes | payload (zlib of the lines, each ending in "\\n")

The CRC covers everything after it. A record is appended with one ``write`` and an
``fsync`` before :meth:`DiskSpool.append` returns, so what was handed over survives
``kill -9`` and a power cut. Records are only ever appended to the newest segment, so
after a power cut only its tail can be torn: that tail is cut off at start, with a log
line. A segment that is damaged anywhere else is moved to ``spool/corrupt/`` and the
rest is used; the daemon never refuses to start because of its own state.

A segment is deleted once every record in it is written to InfluxDB. A crash between a
write and that deletion replays the segment's records again, which is harmless: InfluxDB
keeps one point per series and timestamp, so a resent point overwrites itself.

Past ``max_bytes`` the oldest segments are deleted and their points counted as dropped.
Nothing touches the disk while nothing is spooled: a healthy InfluxDB costs no writes.
"""

from __future__ import annotations

import collections
import logging
import os
import struct
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from pitelemetry.clock import ClockMark

log = logging.getLogger(__name__)

MAGIC = b"PTS1"
_HEADER = struct.Struct("<4sIIIBq16s")
_CRC_FROM = 12  # the CRC covers the header after magic, length and the CRC itself
_HAS_MARK = 1
MAX_RECORD_BYTES = 64 * 1024 * 1024


class SpoolRecord:
    """One spooled batch: its lines, each ending in a newline, as UTF-8, ready to send."""

    __slots__ = ("body", "count", "mark")

    def __init__(self, body: bytes, count: int, mark: ClockMark | None = None) -> None:
        self.body = body
        self.count = count
        self.mark = mark

    @classmethod
    def from_lines(cls, lines: list[str], mark: ClockMark | None = None) -> SpoolRecord:
        body = ("\n".join(lines) + "\n").encode("utf-8", "replace") if lines else b""
        return cls(body, len(lines), mark)

    @property
    def lines(self) -> list[str]:
        return self.body.decode("utf-8").split("\n")[:-1]


class Spool(Protocol):
    """Oldest-first storage of unwritten batches; see :class:`DiskSpool`."""

    @property
    def lines(self) -> int: ...

    @property
    def bytes(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def degraded(self) -> str:
        """Why points are kept in memory only ("" while the disk takes them)."""
        ...

    def append(self, lines: list[str], mark: ClockMark | None = None) -> None: ...

    def head(self) -> SpoolRecord | None: ...

    def ack(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Segment:
    path: Path
    size: int = 0
    records: int = 0
    lines: int = 0
    read_records: int = 0
    read_lines: int = 0
    read_offset: int = 0
    line_counts: collections.deque[int] = field(default_factory=collections.deque)


def encode_record(record: SpoolRecord) -> bytes:
    payload = zlib.compress(record.body, 1)
    mark = record.mark
    flags = _HAS_MARK if mark else 0
    offset = mark.offset_ns if mark else 0
    boot = _boot_bytes(mark.boot_id) if mark else bytes(16)
    rest = struct.pack("<IBq16s", record.count, flags, offset, boot)
    crc = zlib.crc32(payload, zlib.crc32(rest))
    return MAGIC + struct.pack("<II", len(payload), crc) + rest + payload


def _boot_bytes(boot_id: str) -> bytes:
    try:
        return uuid.UUID(boot_id).bytes
    except ValueError:
        return bytes(16)


class CorruptRecordError(Exception):
    pass


def _read_record(handle: BinaryIO, offset: int, path: Path) -> tuple[SpoolRecord, int] | None:
    """The record at ``offset`` and its size, ``None`` at a clean end of file; raises
    :class:`CorruptRecordError` for a torn or damaged record."""
    handle.seek(offset)
    header = handle.read(_HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise CorruptRecordError(f"{path}: torn record header at byte {offset}")
    magic, length, crc, count, flags, clock_offset, boot = _HEADER.unpack(header)
    if magic != MAGIC or length > MAX_RECORD_BYTES:
        raise CorruptRecordError(f"{path}: no record at byte {offset}")
    payload = handle.read(length)
    if len(payload) < length:
        raise CorruptRecordError(f"{path}: torn record at byte {offset}")
    if zlib.crc32(payload, zlib.crc32(header[_CRC_FROM:])) != crc:
        raise CorruptRecordError(f"{path}: checksum mismatch at byte {offset}")
    try:
        body = zlib.decompress(payload)
    except zlib.error as exc:
        raise CorruptRecordError(f"{path}: undecodable record at byte {offset}: {exc}") from None
    if body.count(b"\n") != count:
        raise CorruptRecordError(f"{path}: record at byte {offset} has the wrong line count")
    mark = ClockMark(str(uuid.UUID(bytes=boot)), clock_offset) if flags & _HAS_MARK else None
    return SpoolRecord(body, count, mark), _HEADER.size + length


class DiskSpool:
    def __init__(
        self, directory: Path, max_bytes: int, *, segment_bytes: int | None = None
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        # About eight segments under the cap, so dropping the oldest one keeps the spool
        # within an eighth of it (the newest segment is never dropped).
        self.segment_bytes = segment_bytes or max(1, min(4 * 1024 * 1024, max_bytes // 8))
        self._dropped = 0
        self._segments: collections.deque[_Segment] = collections.deque()
        self._append_handle: BinaryIO | None = None
        self._read_handle: BinaryIO | None = None
        self._head: SpoolRecord | None = None
        self._head_size = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    # -- start-up ---------------------------------------------------------------------------

    def _recover(self) -> None:
        paths = sorted(self.directory.glob("*.seg"))
        for index, path in enumerate(paths):
            if path.is_symlink() or not path.is_file():  # never read or cut through a link
                self._quarantine(path, "not a regular file")
                continue
            segment = _Segment(path)
            try:
                self._scan(segment, last=index == len(paths) - 1)
            except (OSError, CorruptRecordError) as exc:
                self._quarantine(path, str(exc))
                continue
            if segment.records:
                self._segments.append(segment)
            else:
                path.unlink()
        if self._segments:
            log.info("spool: %d points from earlier runs wait in %s", self.lines, self.directory)

    def _scan(self, segment: _Segment, *, last: bool) -> None:
        with segment.path.open("rb") as handle:
            offset = 0
            while True:
                try:
                    found = _read_record(handle, offset, segment.path)
                except CorruptRecordError as exc:
                    if not last:
                        raise
                    # Only the newest segment is appended to, so this is a write cut
                    # short by a crash or power cut: keep everything before it.
                    log.warning("spool: %s; keeping the %d records before it", exc, segment.records)
                    os.truncate(segment.path, offset)
                    break
                if found is None:
                    break
                record, size = found
                segment.records += 1
                segment.lines += record.count
                segment.line_counts.append(record.count)
                offset += size
        segment.size = offset

    def _quarantine(self, path: Path, reason: str) -> None:
        corrupt = self.directory / "corrupt"
        try:
            corrupt.mkdir(exist_ok=True)
            target = corrupt / f"{path.stem}-{int(time.time())}{path.suffix}"
            path.rename(target)
            log.error("spool: %s; moved it to %s and carrying on", reason, target)
        except OSError as exc:
            log.error("spool: %s; could not move it aside either (%s); ignoring it", reason, exc)

    # -- the Spool interface ----------------------------------------------------------------

    @property
    def lines(self) -> int:
        return sum(s.lines - s.read_lines for s in self._segments)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def degraded(self) -> str:
        return ""

    def append(self, lines: list[str], mark: ClockMark | None = None) -> None:
        """Store ``lines`` durably (``fsync``) before returning."""
        if not lines:
            return
        data = encode_record(SpoolRecord.from_lines(lines, mark))
        segment = self._segments[-1] if self._segments else None
        if segment is None or segment.size >= self.segment_bytes:
            segment = self._new_segment()
        if self._append_handle is None:  # the newest segment of an earlier run
            self._append_handle = _open_append(segment.path)
        handle = self._append_handle
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        segment.size += len(data)
        segment.records += 1
        segment.lines += len(lines)
        segment.line_counts.append(len(lines))
        self._enforce_cap()

    def _new_segment(self) -> _Segment:
        number = int(self._segments[-1].path.stem) + 1 if self._segments else 1
        path = self.directory / f"{number:012d}.seg"
        self._close_append()
        self._append_handle = _open_append(path)
        _fsync_directory(self.directory)
        segment = _Segment(path)
        self._segments.append(segment)
        return segment

    def _enforce_cap(self) -> None:
        dropped = 0
        while self.bytes > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments.popleft()
            dropped += oldest.lines - oldest.read_lines
            self._forget_reader()
            oldest.path.unlink(missing_ok=True)
        if dropped:
            self._dropped += dropped
            log.warning(
                "spool: over spool_max_bytes (%d): dropped the oldest %d points",
                self.max_bytes,
                dropped,
            )

    def head(self) -> SpoolRecord | None:
        """The oldest record not yet acknowledged, or ``None``."""
        if self._head is not None:
            return self._head
        while self._segments:
            segment = self._segments[0]
            if segment.read_records >= segment.records:
                if segment is self._segments[-1]:
                    return None
                self._drop_consumed()
                continue
            if self._read_handle is None:
                self._read_handle = segment.path.open("rb")
            try:
                found = _read_record(self._read_handle, segment.read_offset, segment.path)
            except (OSError, CorruptRecordError) as exc:
                self._forget_reader()
                self._segments.popleft()
                self._dropped += segment.lines - segment.read_lines
                self._quarantine(segment.path, str(exc))
                continue
            if found is None:
                return None
            self._head, self._head_size = found
            return self._head
        return None

    def ack(self) -> None:
        """The head record is written (or given up on): forget it."""
        if self._head is None:
            return
        segment = self._segments[0]
        segment.read_records += 1
        segment.read_lines += segment.line_counts.popleft()
        segment.read_offset += self._head_size
        self._head = None
        if segment.read_records >= segment.records:
            self._drop_consumed()

    def _drop_consumed(self) -> None:
        segment = self._segments[0]
        self._forget_reader()
        if segment is self._segments[-1]:
            self._close_append()
        self._segments.popleft()
        segment.path.unlink(missing_ok=True)

    def _forget_reader(self) -> None:
        self._head = None
        if self._read_handle is not None:
            self._read_handle.close()
            self._read_handle = None

    def _close_append(self) -> None:
        if self._append_handle is not None:
            self._append_handle.close()
            self._append_handle = None

    def close(self) -> None:
        self._forget_reader()
        self._close_append()


class MemorySpool:
    """The same interface in memory, bounded alike: used when the state directory
    cannot be written (read-only SD card, wrong owner), so the daemon still runs."""

    def __init__(self, max_bytes: int, degraded: str = "") -> None:
        self.max_bytes = max_bytes
        self._records: collections.deque[tuple[SpoolRecord, int]] = collections.deque()
        self._bytes = 0
        self._dropped = 0
        self._degraded = degraded

    @property
    def degraded(self) -> str:
        return self._degraded

    @property
    def lines(self) -> int:
        return sum(record.count for record, _ in self._records)

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def dropped(self) -> int:
        return self._dropped

    def append(self, lines: list[str], mark: ClockMark | None = None) -> None:
        if not lines:
            return
        record = SpoolRecord.from_lines(lines, mark)
        size = len(record.body) + 1
        self._records.append((record, size))
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._records) > 1:
            oldest, oldest_size = self._records.popleft()
            self._bytes -= oldest_size
            self._dropped += oldest.count
            log.warning(
                "backlog over %d bytes: dropped the oldest %d points",
                self.max_bytes,
                oldest.count,
            )

    def head(self) -> SpoolRecord | None:
        return self._records[0][0] if self._records else None

    def ack(self) -> None:
        if self._records:
            _, size = self._records.popleft()
            self._bytes -= size

    def close(self) -> None:
        pass


class FallbackSpool:
    """The disk spool with memory behind it.

    When the disk refuses a record (a read-only SD card, a spool directory owned by
    root), the points go to a :class:`MemorySpool`, bounded by the same cap and counted
    when it overflows, instead of being lost; ``degraded`` says why, for ``status`` and
    the log (once). What the disk already holds is older, so it is replayed first. The
    disk is tried again whenever memory is empty, so a remounted card is used again."""

    def __init__(self, disk: DiskSpool, max_bytes: int) -> None:
        self.disk = disk
        self.memory = MemorySpool(max_bytes)
        self._degraded = ""
        self._head_from: Spool | None = None

    @property
    def lines(self) -> int:
        return self.disk.lines + self.memory.lines

    @property
    def bytes(self) -> int:
        return self.disk.bytes + self.memory.bytes

    @property
    def dropped(self) -> int:
        return self.disk.dropped + self.memory.dropped

    @property
    def degraded(self) -> str:
        return self._degraded

    def append(self, lines: list[str], mark: ClockMark | None = None) -> None:
        if not self.memory.lines:  # keep the order: nothing newer is in memory yet
            try:
                self.disk.append(lines, mark)
            except OSError as exc:
                reason = f"cannot write {self.disk.directory}: {exc.strerror or exc}"
                if reason != self._degraded:
                    log.error(
                        "spool: %s; keeping unwritten points in memory (up to %d bytes, "
                        "lost on restart) until the disk takes them again",
                        reason,
                        self.memory.max_bytes,
                    )
                self._degraded = reason
            else:
                if self._degraded:
                    log.info("spool: %s takes points again", self.disk.directory)
                self._degraded = ""
                return
        self.memory.append(lines, mark)

    def head(self) -> SpoolRecord | None:
        for spool in (self.disk, self.memory):
            record = spool.head()
            if record is not None:
                self._head_from = spool
                return record
        return None

    def ack(self) -> None:
        if self._head_from is not None:
            self._head_from.ack()
            self._head_from = None

    def close(self) -> None:
        self.disk.close()


def open_spool(directory: Path, max_bytes: int) -> Spool:
    """A :class:`FallbackSpool` on ``directory``, or a :class:`MemorySpool` if the
    directory cannot be used at all (logged; the daemon runs on)."""
    try:
        return FallbackSpool(DiskSpool(directory, max_bytes), max_bytes)
    except OSError as exc:
        reason = f"cannot use {directory}: {exc.strerror or exc}"
        log.error(
            "spool: %s; unwritten points are kept in memory only and are lost on restart. "
            "Check that the directory exists and belongs to the service user",
            reason,
        )
        return MemorySpool(max_bytes, degraded=reason)


def _open_append(path: Path) -> BinaryIO:
    """A segment opened for appending, never through a symbolic link planted in its
    place (``O_NOFOLLOW``: the open fails instead, and the points go to memory)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(path, flags, 0o640), "ab")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
