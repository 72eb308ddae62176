"""Reading the project's JSON files (fronts, tune parts, profiles, configs) the same way.

`read_json` bounds the bytes it reads (a front named `/dev/zero` must not fill the memory), refuses
folders and devices, and turns every failure into a ValueError that names the file and says
what to do. NaN and Infinity, which Python's `json` accepts and JSON does not, are refused too.
The `check_*` helpers name a field by its path in the file, e.g. `rows[3].cost.total_s`.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

MAX_JSON_BYTES = 64 * 2**20  # the largest front written so far is ~0.1 MiB


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def read_json(path: str | Path, what: str = "JSON file", *, hint: str = "",
              max_bytes: int = MAX_JSON_BYTES):
    """The parsed content of `path`; ValueError naming `path` if it cannot be read as JSON."""
    path = Path(path)
    fix = f"; {hint}" if hint else ""
    try:
        mode = os.stat(path).st_mode  # before open(): a FIFO would block it
        if stat.S_ISDIR(mode):
            raise ValueError(f"{what} {path} is a folder, not a file{fix}.")
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what} {path} is not a regular file{fix}.")
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ValueError(f"{what} {path} not found{fix}.") from None
    except PermissionError:
        raise ValueError(f"no permission to read {what} {path}.") from None
    except OSError as err:
        raise ValueError(f"cannot read {what} {path} ({err.strerror or err}){fix}.") from None
    if len(raw) > max_bytes:
        raise ValueError(f"{what} {path} is larger than {max_bytes // 2**20} MiB, far more than "
                         f"such a file holds{fix}.")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not UTF-8 text{fix}.") from None
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{what} {path} is not valid JSON ({err}){fix}.") from None


def check_number(value, where: str, *, lo: float | None = None, integer: bool = False,
                 positive: bool = False, optional: bool = False) -> str | None:
    """What is wrong with a numeric field (None if nothing): its type, finiteness and range."""
    if value is None:
        return None if optional else f"{where} is missing"
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        return (f"{where} must be a{'n integer' if integer else ' number'}, got "
                f"{type(value).__name__} {value!r}")
    if not math.isfinite(value):
        return f"{where} must be finite, got {value!r}"
    if positive and value <= 0:
        return f"{where} must be above zero, got {value!r}"
    if lo is not None and value < lo:
        return f"{where} must be >= {lo}, got {value!r}"
    return None
