"""Units in one place: compute dtypes by name and byte sizes.

Compute dtypes are named as on the command line (`fp32`, `bf16`, `fp16`); everything that takes
a dtype accepts either the name or the `torch.dtype`.
"""

from __future__ import annotations

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
