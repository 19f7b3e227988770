"""Parameter grids from ``KEY=v1,v2`` specs (``--sweep`` on the command line).

Values are typed: ``true``/``false`` are booleans, ``12`` an int, ``0.5`` or ``1e-3`` a float, anything else
a string; an axis that mixes ints and floats is all floats. ``KEY=lo:hi:step`` is the inclusive arithmetic
range (``atr_mult=1:2:0.5`` is 1.0, 1.5, 2.0), computed in decimal so 0.1 steps do not drift. When the
caller declares the keys it accepts (``types``), an unknown key or a value of the wrong type is refused
with a message naming it. The grid is the cartesian product of the axes, in the order given, the last
axis varying fastest.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

Value = bool | int | float | str

MAX_POINTS = 100_000
MAX_RANGE_VALUES = 10_000
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_INT = re.compile(r"^[+-]?\d+$")
_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE = re.compile(rf"^({_NUM}):({_NUM}):({_NUM})$")


class GridError(ValueError):
    """A sweep spec that cannot be used; the message says which and why, in one line."""


@dataclass(frozen=True, slots=True)
class Axis:
    key: str
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Grid:
    axes: tuple[Axis, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(len(a.values) for a in self.axes)

    def points(self) -> list[dict[str, Value]]:
        """Every combination, as ``{key: value}`` dicts (one empty dict for an empty grid)."""
        return [dict(zip(self.keys, combo, strict=True)) for combo in itertools.product(*(a.values for a in self.axes))]


def parse_grid(specs: Iterable[str], types: Mapping[str, type] | None = None) -> Grid:
    axes: list[Axis] = []
    for spec in specs:
        axis = parse_axis(spec, types)
        if any(a.key == axis.key for a in axes):
            raise GridError(f"{axis.key} is swept twice; give all its values in one {axis.key}=v1,v2,...")
        axes.append(axis)
    grid = Grid(tuple(axes))
    if grid.size > MAX_POINTS:
        raise GridError(f"the sweep has {grid.size:,} points (more than {MAX_POINTS:,}); use fewer values")
    return grid


def parse_axis(spec: str, types: Mapping[str, type] | None = None) -> Axis:
    key, sep, raw = spec.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise GridError(f"{spec!r} is not KEY=v1,v2,... (e.g. fast=5,10,20)")
    if not _KEY.match(key):
        raise GridError(f"{key!r} is not a parameter name (letters, digits, _ . -)")
    if types is not None and key not in types:
        raise GridError(f"unknown sweep key {key!r}; known keys: {', '.join(sorted(types)) or 'none'}")
    if not raw:
        raise GridError(f"{key}= has no values (e.g. {key}=1,2,3)")
    texts = [t.strip() for t in raw.split(",")]
    if any(not t for t in texts):
        raise GridError(f"{spec!r} has an empty value between commas")
    values: list[Value] = []
    for text in texts:
        values.extend(_expand(key, text))
    wanted = types.get(key) if types is not None else None
    values = _coerce(key, values, wanted) if wanted is not None else _unify(key, values)
    seen: set[Any] = set()
    for v in values:
        marker = (type(v), v)
        if marker in seen:
            raise GridError(f"{key}: value {v!r} is given twice")
        seen.add(marker)
    return Axis(key, tuple(values))


def parse_value(text: str) -> Value:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if _INT.match(text):
        return int(text)
    if re.fullmatch(_NUM, text):
        value = float(text)
        if not math.isfinite(value):
            raise GridError(f"{text!r} is too large a number")
        return value
    return text


def _expand(key: str, text: str) -> list[Value]:
    match = _RANGE.match(text)
    if match is None:
        return [parse_value(text)]
    try:
        lo, hi, step = (Decimal(g) for g in match.groups())
    except InvalidOperation:
        raise GridError(f"{key}: {text!r} is not a range lo:hi:step") from None
    if step <= 0 or hi < lo:
        raise GridError(f"{key}: range {text!r} needs lo <= hi and a positive step")
    count = int((hi - lo) / step) + 1
    if count > MAX_RANGE_VALUES:
        raise GridError(f"{key}: range {text!r} has {count:,} values (more than {MAX_RANGE_VALUES:,})")
    all_int = all(_INT.match(g) for g in match.groups())
    return [int(lo + i * step) if all_int else float(lo + i * step) for i in range(count)]


def _unify(key: str, values: list[Value]) -> list[Value]:
    kinds = {type(v) for v in values}
    if kinds <= {int, float}:
        return [float(v) for v in values] if float in kinds else values
    if len(kinds) > 1:
        shown = ", ".join(repr(v) for v in values)
        raise GridError(f"{key} mixes kinds of values ({shown}); give one kind (all numbers, all text or "
                        f"all true/false)")
    return values


def _coerce(key: str, values: list[Value], wanted: type) -> list[Value]:
    out: list[Value] = []
    for v in values:
        if type(v) is wanted and wanted in (bool, int):
            out.append(v)
        elif wanted is float and isinstance(v, int | float) and not isinstance(v, bool):
            out.append(float(v))
        elif wanted is str:
            out.append(str(v).lower() if isinstance(v, bool) else str(v))
        else:
            raise GridError(f"{key} takes {_KIND.get(wanted, wanted.__name__)}, got {v!r}")
    return out


_KIND = {bool: "true or false", int: "whole numbers", float: "numbers", str: "text"}
