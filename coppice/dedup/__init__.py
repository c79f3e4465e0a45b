"""Deduplication ("sis"): post-process scans, inline mode, savings reports.

Contract: this package owns the fingerprint index (``<pool>/dedup/``), the
per-volume sis settings (pool kv, scope ``sis``) and the scan jobs. It uses
only the engine's public dedup primitives (``iter_blocks``, ``read_pbn``,
``share_block``, the ``inline_dedup`` hook) and never changes what any
volume or snapshot reads: every fingerprint match is confirmed byte for
byte before two blocks are shared.

Public surface:

* ``attach(pool)`` — install the inline hook (call after opening a pool);
* ``scan(pool, volumes=None, full=False)`` / ``Scanner`` — post-process job;
* ``status(pool, volume=None)`` — settings, job progress, last run;
* ``savings(pool, volume=None)`` — the `df -s` figures;
* ``config`` — sis on/off, inline, schedules, ``due(pool, now)``.
"""

from . import config
from .config import BadSisSchedule, SisNotEnabled, due
from .inline import InlineDedup, attach, detach
from .report import savings
from .scanner import ScanBusy, Scanner, run_due, scan
from .status import status

__all__ = [
    "attach",
    "detach",
    "InlineDedup",
    "scan",
    "Scanner",
    "ScanBusy",
    "run_due",
    "status",
    "savings",
    "config",
    "due",
    "BadSisSchedule",
    "SisNotEnabled",
]
