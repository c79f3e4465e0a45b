"""Every `coppice ...` command shown in docs/ exists, with the options the
docs give it: each command path answers `--help`, and each option the
synopsis names appears in that help. (The README's blocks are run for real
by test_readme.py; the docs' synopses are checked here, so a renamed
command or option cannot leave the docs behind.)
"""

from __future__ import annotations

import glob
import os
import re

import pytest
from typer.testing import CliRunner

from coppice.cli.main import app

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
WORD = re.compile(r"[a-z][a-z-]*\Z")
OPTION = re.compile(r"--?[A-Za-z][A-Za-z-]*")


def synopses() -> list[tuple[str, list[str], list[str]]]:
    """(where, command path, options) for every command the docs show."""
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for block in FENCE.findall(text):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if not line.startswith("coppice "):
                    continue
                where = f"{os.path.relpath(path, ROOT)}: {line[:60]}"
                first = True
                for seg in line.split(";"):
                    tokens = seg.split()
                    if first:
                        tokens = tokens[1:]  # "coppice"
                        first = False
                    words: list[list[str]] = []
                    rest = tokens
                    for i, t in enumerate(tokens):
                        alts = t.split("|")
                        if all(WORD.match(a) for a in alts):
                            words.append(alts)
                            continue
                        rest = tokens[i:]
                        break
                    else:
                        rest = []
                    if not words or "..." in seg and len(words) == 1 and not rest:
                        continue
                    opts = [
                        piece
                        for t in rest
                        for piece in re.split(r"[\[\]|]", t)
                        if OPTION.fullmatch(piece) and not re.fullmatch(r"-[0-9N]", piece)
                    ]
                    # Expand alternatives (show|status) into each command path.
                    paths = [[]]
                    for alts in words:
                        paths = [p + [a] for p in paths for a in alts]
                    for p in paths:
                        out.append((where, p, opts))
    return out


CASES = synopses()


def test_the_docs_show_commands():
    assert len(CASES) > 40, "the docs' command synopses were not found"


@pytest.mark.parametrize("where,path,opts", CASES, ids=[" ".join(c[1]) for c in CASES])
def test_documented_command_exists(where, path, opts):
    r = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert r.exit_code == 0, f"{where}: `coppice {' '.join(path)}` does not exist:\n{r.output[-800:]}"
    missing = [o for o in opts if o not in r.output]
    assert not missing, f"{where}: `coppice {' '.join(path)}` has no option {', '.join(missing)}"
