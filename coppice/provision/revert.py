"""Incus-style revert: register an undo after each step of a multi-step
operation; unless ``success()`` is called, the undos run in reverse order
when the block exits (also on an exception, which then propagates).

Contract: an undo that fails does not stop the others; its error is kept in
``errors`` (and logged), so one stuck step never leaves the rest half made.
"""

from __future__ import annotations

import logging

log = logging.getLogger("coppice.provision")


class Revert:
    def __init__(self):
        self._undo: list = []
        self._ok = False
        self.errors: list[Exception] = []

    def add(self, fn) -> None:
        self._undo.append(fn)

    def success(self) -> None:
        self._ok = True

    def run(self) -> None:
        while self._undo:
            fn = self._undo.pop()
            try:
                fn()
            except Exception as e:  # keep undoing: one stuck step must not leave the rest behind
                log.warning("undo step failed: %s", e)
                self.errors.append(e)

    def __enter__(self) -> Revert:
        return self

    def __exit__(self, *exc) -> None:
        if not self._ok:
            self.run()
