"""Sizes as an ONTAP administrator types and reads them: 20g, 512m, 1t.

Contract: pure functions. ``parse_size`` takes an int (bytes) or a string
with an optional unit b/k/m/g/t/p (powers of 1024, case-insensitive, an
optional trailing 'b' or 'ib': 20G, 20gb, 20GiB) and returns bytes, or
raises ``BadSize``. ``format_size`` gives the shortest exact form when there
is one (20g, 1536m), else one decimal (1.5g).
"""

from __future__ import annotations

import re


def _bad(text, why: str):
    from .errors import BadSize  # only when refusing: formatting a size loads no error classes

    return BadSize(text=text, why=why)


UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_RX = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*\Z", re.I)
MAX_SIZE = 1 << 60


def parse_size(text, what: str = "size") -> int:
    if isinstance(text, bool):
        raise _bad(text, "it is not a size")
    if isinstance(text, int):
        n = text
    else:
        if not isinstance(text, str):
            raise _bad(text, "it is not a size")
        m = _RX.match(text)
        if not m:
            raise _bad(text, "it is not a number with a unit")
        num, unit = m.group(1), m.group(2).lower()
        mult = UNITS[unit]
        if "." in num:
            whole, frac = num.split(".")
            n = int(whole) * mult + (int(frac) * mult) // (10 ** len(frac))
        else:
            n = int(num) * mult
    if n <= 0:
        raise _bad(text, f"the {what} must be greater than zero")
    if n > MAX_SIZE:
        raise _bad(text, f"the {what} is larger than the 1 EiB limit")
    return n


def format_size(n: int) -> str:
    """The largest unit not above ``n``: exact when it divides (20g), else
    one decimal (1.5g)."""
    if n is None:
        return "-"
    n = int(n)
    if n == 0:
        return "0"
    for unit in "ptgmk":
        mult = UNITS[unit]
        if abs(n) >= mult:
            return f"{n // mult}{unit}" if n % mult == 0 else f"{n / mult:.1f}{unit}"
    return f"{n}b"
