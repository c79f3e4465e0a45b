"""The intent log: acknowledged writes between two consistency points.

Contract: ``append`` writes one whole record (or raises, leaving none of it)
before the caller acknowledges the write, so a ``kill -9`` loses nothing that was
acknowledged; ``sync`` (fdatasync) makes every appended record durable
against power loss — the pool syncs the data file first, so a synced record
never points at unwritten data. ``records`` yields the valid records of one
epoch in order and stops at the first torn or foreign record. ``reset``
empties the log after a consistency point has committed (under the pool's
lock); ``sync`` may also run without that lock, beside appends; records of an
older epoch left behind by a crash between commit and reset are ignored by
their epoch. The format is in ``format.py``.
"""

from __future__ import annotations

from array import array

from .checksum import block_checksum
from .fileio import OS_FILES, Files
from .format import LOG_CLEAR, LOG_HEADER, LOG_MAGIC, LOG_TRAILER, LOG_WRITE


def _write_body(epoch: int, obj: int, lbn: int, pbns: array, csums: array) -> bytes:
    return (
        LOG_HEADER.pack(LOG_MAGIC, epoch, LOG_WRITE, obj, lbn, len(pbns)) + pbns.tobytes() + csums.tobytes()
    )


def _sealed(body: bytes) -> bytes:
    """A record: its body and the trailer that checksums it."""
    return body + LOG_TRAILER.pack(block_checksum(body))


class IntentLog:
    def __init__(self, path: str, files: Files = OS_FILES):
        self.path = path
        self.file = files.open(path, append=True)
        self.size = self.file.size()
        # Appends bump ``gen``; ``synced`` is the gen the last completed
        # fdatasync covered. sync() may run without the pool's lock, beside
        # appends: a record appended during an fdatasync keeps gen > synced,
        # so the next sync() covers it (never the other way round).
        self.gen = 0
        self.synced = 0
        self.broken: OSError | None = None

    def append_write(self, epoch: int, obj: int, lbn: int, pbns: array, csums: array) -> None:
        self._append(_sealed(_write_body(epoch, obj, lbn, pbns, csums)))

    def append_writes(self, epoch: int, records) -> None:
        """Several write records ``(obj, lbn, pbns, csums)`` with one append:
        all of them or none (a batch of writes fails whole)."""
        self._append(b"".join(_sealed(_write_body(epoch, *r)) for r in records))

    def append_clear(self, epoch: int, obj: int, lbn: int, count: int) -> None:
        self._append(_sealed(LOG_HEADER.pack(LOG_MAGIC, epoch, LOG_CLEAR, obj, lbn, count)))

    def _append(self, rec: bytes) -> None:
        """All of ``rec`` (sealed records) or none of it: a failed append
        (ENOSPC midway) is cut back off, so the next record does not land
        behind a torn one (``records`` stops at the first torn record). If
        even that fails the log refuses every further append."""
        if self.broken is not None:
            raise self.broken
        try:
            self.file.append_all(rec)
        except BaseException:
            try:
                self.file.truncate(self.size)
            except OSError as e:
                self.broken = e
            raise
        self.size += len(rec)
        self.gen += 1

    def sync(self) -> None:
        gen = self.gen
        if gen != self.synced:
            self.file.sync()
            if gen > self.synced:
                self.synced = gen

    def reset(self) -> None:
        """Empty the log: only once its content is committed."""
        self.truncate(0)

    def truncate(self, size: int) -> None:
        """Cut the log back to ``size`` bytes: records past it are either
        committed or belong to a management transaction that rolled back."""
        self.file.truncate(size)
        self.file.sync()
        self.size = size
        self.synced = self.gen
        self.broken = None

    def records(self, epoch: int):
        """(kind, obj, lbn, count, pbns, csums) of every intact record of
        ``epoch``, in the order they were appended."""
        data = self.file.read_all()
        pos = 0
        hs, ts = LOG_HEADER.size, LOG_TRAILER.size
        while pos + hs + ts <= len(data):
            magic, rec_epoch, kind, obj, lbn, count = LOG_HEADER.unpack_from(data, pos)
            if magic != LOG_MAGIC or kind not in (LOG_WRITE, LOG_CLEAR):
                break
            body_len = hs + (16 * count if kind == LOG_WRITE else 0)
            end = pos + body_len
            if end + ts > len(data):
                break
            (trailer,) = LOG_TRAILER.unpack_from(data, end)
            if block_checksum(data[pos:end]) != trailer:
                break
            if rec_epoch == epoch:
                pbns = csums = None
                if kind == LOG_WRITE:
                    pbns = array("Q")
                    pbns.frombytes(data[pos + hs : pos + hs + 8 * count])
                    csums = array("Q")
                    csums.frombytes(data[pos + hs + 8 * count : end])
                yield kind, obj, lbn, count, pbns, csums
            pos = end + ts

    def close(self) -> None:
        self.file.close()
