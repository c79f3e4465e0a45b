"""The small pattern language of VM names and host names: ``web{n:03}``,
``{vm}.lab.example``, ``{vm}-{clone}``, ``{template}-{n}``.

Contract:

* A pattern is text with fields in braces. A field is a name the caller
  allows (``n``, ``vm``, ``template``, ``clone``), optionally with a width
  for a number field: ``{n:3}`` pads with spaces, ``{n:03}`` with zeros,
  width at most ``MAX_WIDTH``. ``{{`` and ``}}`` are literal braces. Nothing else:
  no attribute or index access, no conversions, no other format specs, so
  a pattern can neither reach into Python objects nor make a huge string.
* ``compile_pattern(text, allowed)`` checks the whole pattern once and
  raises ``PatternError`` (a ``ValueError`` whose message says what is wrong
  at which position); callers turn it into their own error class.
  ``Pattern.expand(**values)`` is then pure string assembly.
"""

from __future__ import annotations

import dataclasses
import re

MAX_WIDTH = 12
MAX_LENGTH = 255
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(0?)([0-9]+))?\}")


class PatternError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Pattern:
    text: str
    parts: tuple  # str (literal) or (field, zero_pad, width)

    @property
    def fields(self) -> set[str]:
        return {p[0] for p in self.parts if isinstance(p, tuple)}

    def expand(self, **values) -> str:
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            name, zero, width = p
            v = values[name]
            if width:
                out.append(f"{v:{'0' if zero else ''}{width}d}")
            else:
                out.append(str(v))
        return "".join(out)


def compile_pattern(text, allowed, numbers=("n",)) -> Pattern:
    if not isinstance(text, str) or not text:
        raise PatternError("it is empty")
    if len(text) > MAX_LENGTH:
        raise PatternError(f"it is {len(text)} characters long (at most {MAX_LENGTH})")
    parts: list = []
    lit: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            lit.append(c)
            i += 2
            continue
        if c == "}":
            raise PatternError(f"a '}}' at position {i + 1} closes nothing (write '}}}}' for a brace)")
        if c != "{":
            lit.append(c)
            i += 1
            continue
        m = _FIELD.match(text, i)
        if m is None:
            end = text.find("}", i)
            shown = text[i : end + 1] if end >= 0 else text[i:]
            raise PatternError(
                f"{shown!r} at position {i + 1} is not a field: write {{name}} or {{name:03}} "
                f"with name one of {', '.join(sorted(allowed))}"
            )
        name, zero, width = m.group(1), m.group(2), m.group(3)
        if name not in allowed:
            raise PatternError(
                f"unknown field {{{name}}}: only {', '.join('{' + a + '}' for a in sorted(allowed))}"
            )
        w = int(width[:6]) if width else 0  # 6 digits: more is out of range anyway
        if width is not None and name not in numbers:
            raise PatternError(f"{{{name}}} is text, not a number: it takes no width")
        if width is not None and not 1 <= w <= MAX_WIDTH:
            raise PatternError(f"width {width} of {{{name}}} must be 1 to {MAX_WIDTH}")
        if lit:
            parts.append("".join(lit))
            lit = []
        parts.append((name, bool(zero), w))
        i = m.end()
    if lit:
        parts.append("".join(lit))
    return Pattern(text=text, parts=tuple(parts))
