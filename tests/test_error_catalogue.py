"""The error catalogue holds for every error class: one name, one stable code,
each exit code declared once, an HTTP status and errno, rebuilt by code, and
docs/errors.md generated from it."""

from __future__ import annotations

import os
import subprocess
import sys

from coppice.errors import CATALOGUE, CoppiceError, all_classes, by_code, rebuild

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_error_class_is_in_the_catalogue_once():
    classes = all_classes()
    names = [c.__name__ for c in classes]
    dup = sorted({n for n in names if names.count(n) > 1})
    assert not dup, f"error class names used twice across layers: {dup}"
    listed = {w.rsplit(":", 1)[1] for w in CATALOGUE.values()}
    missing = sorted(f"{c.__module__}:{c.__name__}" for c in classes if c.__name__ not in listed)
    assert not missing, (
        f"error classes without a catalogue code (add them to coppice.errors.CATALOGUE): {missing}"
    )
    assert len(listed) == len(CATALOGUE), "a class listed under two codes"
    for code, where in CATALOGUE.items():
        assert by_code(code) is not None, f"catalogue code {code}: {where} does not import"


def test_each_exit_code_is_declared_by_one_class():
    owners: dict[int, list[str]] = {}
    for c in all_classes():
        if "exit_code" in c.__dict__:
            owners.setdefault(c.exit_code, []).append(c.__name__)
    shared = {k: v for k, v in owners.items() if len(v) > 1}
    assert not shared, f"exit codes declared by more than one class: {shared}"
    assert 130 not in owners  # Ctrl-C's


def test_every_error_has_status_errno_and_a_message():
    for c in all_classes():
        assert isinstance(c.exit_code, int) and 1 <= c.exit_code < 128, c
        assert isinstance(c.http_status, int) and 400 <= c.http_status < 600, c
        assert isinstance(c.errno, int) and c.errno > 0, c
        assert (c.__doc__ or "").strip(), f"{c.__name__} has no message template"


def test_rebuilt_by_code_not_by_name():
    for code, where in CATALOGUE.items():
        cls = by_code(code)
        assert cls is not None and f"{cls.__module__}:{cls.__name__}".endswith(where.rsplit(":", 1)[1])
        e = rebuild(code, "the message", cls.exit_code, cls.http_status)
        assert type(e) is cls and str(e) == "the message" and e.exit_code == cls.exit_code
    # an unknown code (a newer daemon) keeps message and exit code
    e = rebuild(99999, "from the future", 42, 404)
    assert isinstance(e, CoppiceError) and str(e) == "from the future" and e.exit_code == 42


def test_docs_errors_md_is_up_to_date():
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "errors_doc.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
