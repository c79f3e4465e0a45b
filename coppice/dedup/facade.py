"""Dedup: the one Python API of deduplication (``sis``), over an open filer.

Contract: the methods named ``sis_*`` are the dedup rows of
``coppice.operations``; ``coppice.remote.RemoteDedup`` has the same
methods with the same signatures and results over a daemon, so a caller
never knows which one it holds. Results are JSON-able. Errors are the
dedup and engine errors (``SisNotEnabled``, ``VolumeNotFound``,
``BadSisSchedule``...). A scan runs in the caller's thread: ``progress(phase,
done, total)`` at each step, ``should_stop()`` polled between batches (the
scan then pauses, resumable); Ctrl-C pauses it the same way.

It is built over the ``Filer`` (``Dedup(filer)``): the layers above hand
the filer over and never reach into its pool; dedup works on the engine
pool's block maps underneath. ``attach_inline`` and ``due`` are what a
daemon needs besides the ``sis_*`` calls.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidArgument


class Dedup:
    def __init__(self, filer):
        self.pool = filer.pool

    def close(self) -> None:
        pass  # the filer belongs to whoever passed it in

    def attach_inline(self) -> None:
        """Install the inline hook on the pool, so writes to volumes with
        inline dedup on share equal blocks as they are written."""
        from .inline import attach

        attach(self.pool)

    def due(self, now: float) -> list[str]:
        """The volumes whose sis schedule is due at ``now``."""
        from .config import due

        return due(self.pool, now)

    @property
    def block_size(self) -> int:
        return self.pool.block_size

    def sis_status(self, volume: str | None = None):
        from .status import status

        return status(self.pool, volume)

    def sis_savings(self, volume: str | None = None) -> dict:
        from .report import savings

        return savings(self.pool, volume)

    def sis_settings(self) -> dict:
        from . import config

        return config.all_volumes(self.pool)

    def sis_volume_settings(self, volume: str) -> dict:
        from . import config

        self.pool.volume(volume)  # VolumeNotFound
        return config.get(self.pool, volume)

    def sis_configure(
        self,
        volume: str,
        enabled: bool | None = None,
        inline: bool | None = None,
        schedule: str | None = None,
    ) -> dict:
        from . import config

        self.pool.volume(volume)
        if schedule is not None:
            config.parse_schedule(schedule)  # a bad schedule changes nothing, not even `enabled`
        if enabled is not None:
            config.set_enabled(self.pool, volume, enabled)
        if inline is not None:
            config.set_inline(self.pool, volume, inline)
        if schedule is not None:
            config.set_schedule(self.pool, volume, schedule)
        hook = getattr(self.pool, "inline_dedup", None)
        if hook is not None and hasattr(hook, "refresh"):
            hook.refresh()  # the daemon's inline path picks the change up at once
        return config.get(self.pool, volume)

    def sis_pending(self) -> dict | None:
        """The unfinished scan the next ``sis_scan`` resumes first, if any."""
        from .status import _job

        job, live = _job(self.pool)
        if job is None or live or job.get("state") == "done":
            return None  # a running scan is not pending: starting one follows it
        return {k: v for k, v in job.items() if k != "work"}

    def sis_scan_check(self, volumes: list[str] | None = None, full: bool = False) -> None:
        """Refuse at once what a scan would refuse: no volumes, unknown ones, sis off."""
        from . import config
        from .config import SisNotEnabled

        if volumes is not None and not volumes:
            raise InvalidArgument(detail="volumes is empty: name at least one volume, or omit it for all")
        for v in volumes or ():
            self.pool.volume(v)
            if not config.get(self.pool, v)["enabled"]:
                raise SisNotEnabled(volume=v)

    def sis_scan(
        self,
        volumes: list[str] | None = None,
        full: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        resume: bool = False,
    ) -> dict:
        """Scan now (an interrupted scan is finished first). ``resume``: only
        finish the interrupted one when there is one (a restarted daemon job)."""
        from .scanner import Scanner

        self.sis_scan_check(volumes, full)
        sc = None

        def step(phase, done, total):
            if progress is not None:
                progress(phase, done, total)
            if should_stop is not None and should_stop() and sc is not None:
                sc.stop()

        sc = Scanner(self.pool, progress=step)
        result = sc.resume() if resume and sc.pending() is not None else sc.start(volumes, full=full)
        return {k: v for k, v in (result or {}).items() if k != "work"}
