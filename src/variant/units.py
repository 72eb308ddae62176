"""Units in one place: compute dtypes by name, byte sizes, and sizes and durations as typed.

Compute dtypes are named as on the command line (`fp32`, `bf16`, `fp16`); everything that takes
a dtype accepts either the name or the `torch.dtype`.
"""

from __future__ import annotations

import math
import re

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16,
                                  "fp16": torch.float16}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """`'bf16'` or `torch.bfloat16` -> `torch.bfloat16`; anything else is a ValueError."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"unsupported compute dtype {dtype}; use one of {sorted(DTYPES)}.")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown compute dtype {dtype!r}; use one of {sorted(DTYPES)}.")
    return DTYPES[dtype]


def dtype_name(dtype: str | torch.dtype) -> str:
    """The command-line name of a compute dtype: torch.float16 -> 'fp16'."""
    dtype = parse_dtype(dtype)
    return next(name for name, value in DTYPES.items() if value == dtype)


def dtype_bytes(dtype: str | torch.dtype) -> int:
    """Bytes per element: 4 for fp32, 2 for bf16/fp16."""
    return torch.empty((), dtype=parse_dtype(dtype)).element_size()


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def fmt_bytes(n: float | None) -> str:
    """Bytes with a binary unit and three significant digits: 272 MiB, 11.9 GiB, 1.04 GiB."""
    if n is None:
        return "—"
    for unit in _UNITS:
        if abs(n) < 1000 or unit == _UNITS[-1]:
            break
        n /= 1024
    if unit == "B":
        return f"{int(n)} B"
    digits = 0 if abs(n) >= 100 else 1 if abs(n) >= 10 else 2
    return f"{n:.{digits}f} {unit}"


_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "kib": 2**10, "mib": 2**20,
               "gib": 2**30, "tib": 2**40}
_TIME_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0, "m": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str | int | float) -> int:
    """'16GiB' -> 17179869184, '500MB' -> 500000000, '2G' -> 2 GiB (binary), '1024' -> bytes."""
    if isinstance(text, (int, float)):
        return int(text)
    return int(_number_with_unit(text, _SIZE_UNITS, "size", "a number with a unit such as "
                                 "16GiB, 500MB, 2G (G/M/K are binary) or plain bytes"))


def parse_duration(text: str | int | float) -> float:
    """'2s' -> 2.0, '500ms' -> 0.5, '1.5min' -> 90.0, '3' -> 3.0 seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    return _number_with_unit(text, _TIME_UNITS, "duration", "e.g. 2s, 500ms, 1.5min")


def _number_with_unit(text: str, units: dict, what: str, examples: str) -> float:
    m = _NUMBER.match(str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in units:
        raise ValueError(f"cannot read the {what} {text!r}: use {examples}.")
    value = float(m.group(1)) * units[unit]
    if not math.isfinite(value):
        raise ValueError(f"the {what} {text!r} is too large to be meant: use {examples}.")
    return value
