"""The filer: ONTAP 7-mode management over the engine (volumes, snapshots,
FlexClones, LUNs, igroups, LUN maps, options, schedules, space).

Public surface: ``Filer`` (see ``filer.py`` for the API summary) and the
error classes in ``errors``.
"""

from .filer import Filer

__all__ = ["Filer"]
