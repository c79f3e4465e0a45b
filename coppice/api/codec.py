"""JSON in and out of the API: the one place Python values become JSON and back.

Contract: ``to_jsonable(value)`` turns what the filer returns (dataclasses,
enums, paths, bytes, sets, tuples, mappings, and objects with ``as_dict`` or
``to_dict``) into plain JSON values, losing nothing a client needs.
``from_jsonable(data, hint)`` rebuilds a value of the annotated type
``hint`` from that JSON (a dataclass from its fields, ``list[X]``,
``dict[str, X]``, ``X | None``, tuples), so ``RemoteFiler`` hands the CLI
the same objects ``Filer`` would. Unknown or missing hints return the JSON
as it is. Pure functions; safe from any thread.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from typing import Any, Union


def to_jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(v) for v in value), key=repr)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    for attr in ("as_dict", "to_dict", "_asdict"):
        fn = getattr(value, attr, None)
        if callable(fn):
            return to_jsonable(fn())
    if hasattr(value, "__dict__"):
        return {k: to_jsonable(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def _resolve(hint, owner=None):
    if isinstance(hint, str) and owner is not None:
        try:
            return typing.get_type_hints(owner).get(hint, Any)
        except Exception:
            return Any
    return hint


def from_jsonable(data: Any, hint: Any) -> Any:
    if data is None or hint is None or hint is Any or isinstance(hint, (str, typing.ForwardRef)):
        return data
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        for a in non_none:
            try:
                return from_jsonable(data, a)
            except (TypeError, ValueError, KeyError):
                continue
        return data
    if origin in (list, list, set, frozenset) or hint in (list, set, frozenset):
        item = args[0] if args else Any
        out = [from_jsonable(v, item) for v in data]
        if origin in (set, frozenset) or hint in (set, frozenset):
            return (origin or hint)(out)
        return out
    if origin is tuple or hint is tuple:
        if args and len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(v, args[0]) for v in data)
        if args:
            return tuple(from_jsonable(v, a) for v, a in zip(data, args, strict=False))
        return tuple(data)
    if origin in (dict, dict) or hint is dict:
        vh = args[1] if len(args) == 2 else Any
        return {k: from_jsonable(v, vh) for k, v in data.items()}
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint) and isinstance(data, dict):
            try:
                hints = typing.get_type_hints(hint)
            except Exception:
                hints = {}
            kw, late = {}, {}
            for f in dataclasses.fields(hint):
                if f.name not in data:
                    continue
                v = from_jsonable(data[f.name], hints.get(f.name, Any))
                (kw if f.init else late)[f.name] = v
            obj = hint(**kw)
            for k, v in late.items():
                object.__setattr__(obj, k, v)
            return obj
        if issubclass(hint, enum.Enum):
            return hint(data)
        if hint is bytes and isinstance(data, str):
            return bytes.fromhex(data)
        if hint is float and isinstance(data, int):
            return float(data)
    return data


def return_hint(fn) -> Any:
    """The return annotation of ``fn`` resolved to a type (Any when absent)."""
    try:
        return typing.get_type_hints(fn).get("return", Any)
    except Exception:
        return Any
