"""The filer: ONTAP 7-mode management over the engine (volumes, snapshots,
FlexClones, LUNs, igroups, LUN maps, options, schedules, space).

Public surface: ``Filer`` (see ``filer.py`` for the API summary) and the
error classes in ``errors``.
"""

__all__ = ["Filer"]


def __getattr__(name: str):
    # Loaded on first use: `coppice.filer.sizes` (the CLI's formatting) needs no engine.
    if name == "Filer":
        from .filer import Filer

        return Filer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
