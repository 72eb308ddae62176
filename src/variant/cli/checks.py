"""Argument types that check a value when the command line is read, before any work starts.

argparse calls a `type` on every string argument (and on string defaults) and turns an
`ArgumentTypeError` into `variant CMD: error: argument --FLAG: MESSAGE` with exit code 2, so each
check here names its flag without knowing it. One home per kind of input:

    count, natural, seed, int_in(lo, hi)     whole numbers in a range (no 1e3, no 4000 digits)
    float_in(lo, hi)                         finite decimals in a range (no nan, no inf)
    size, duration, wait                     '16GiB', '500ms' (units.parse_size/parse_duration;
                                             a wait may be 0)
    device                                   a torch device that exists here
    port                                     0..65535
    is_loopback(host)                        whether a server address is this machine only
    output_file(*suffixes), output_dir       paths a command will write: not empty, the right
                                             kind, the right extension, a writable place
    input_file                               a regular file to read (not a folder or a device)
    reader(read, what)                       any text reader that raises ValueError (a plan
                                             family, a FLOP budget)

Output paths are only checked here, never created: a refused command leaves no trace.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..units import parse_duration, parse_size

MAX_DIGITS = 30  # longer numbers are typos or attacks; int() of 5000 digits asks for sys flags
SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed


def _range_text(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"in {lo}..{hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}"


def int_in(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """A whole number in lo..hi (inclusive; None: unbounded on that side)."""
    want = "a whole number" + ("" if lo is None and hi is None else " " + _range_text(lo, hi))

    def parse(text: str) -> int:
        text = str(text).strip()
        if len(text) > MAX_DIGITS:
            raise argparse.ArgumentTypeError(f"expected {want}, got a {len(text)}-character "
                                             "value.")
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}.") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected {want}, got {value}.")
        return value

    parse.__name__ = want
    return parse


def float_in(lo: float | None = None, hi: float | None = None) -> Callable[[str], float]:
    """A finite decimal number in lo..hi (inclusive)."""
    want = "a finite number" + ("" if lo is None and hi is None else " " + _range_text(lo, hi))

    def parse(text: str) -> float:
        text = str(text).strip()
        try:
            value = float(text) if len(text) <= 4 * MAX_DIGITS else math.nan
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}.") from None
        if not math.isfinite(value) or (lo is not None and value < lo) or (
                hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected {want}, got {text[:40]!r}.")
        return value

    parse.__name__ = want
    return parse


count = int_in(1)  # images, batches, repeats, threads: at least one
natural = int_in(0)  # warm-up runs, workers, scale indices: zero allowed
seed = int_in(0, SEED_MAX)
port = int_in(0, 65535)


def size(text: str) -> int:
    """'16GiB', '500MB', '2G' -> bytes (> 0)."""
    try:
        value = parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a size above zero, got {text!r}.")
    return value


def _seconds(text: str, zero_ok: bool) -> float:
    try:
        value = parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not (0 <= value if zero_ok else 0 < value) or not value < math.inf:
        want = "of zero or more" if zero_ok else "above zero"
        raise argparse.ArgumentTypeError(f"expected a duration {want}, got {text!r}.")
    return value


def duration(text: str) -> float:
    """'2s', '500ms', '1.5min' -> seconds (> 0, finite)."""
    return _seconds(text, zero_ok=False)


def wait(text: str) -> float:
    """'0', '5ms', '2s' -> seconds (>= 0, finite): how long something may wait."""
    return _seconds(text, zero_ok=True)


def device(text: str) -> str:
    """A torch device string that names a device present here ('cpu', 'cuda', 'cuda:1')."""
    try:
        dev = torch.device(str(text).strip())
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda or cuda:N."
                                         ) from None
    if dev.type == "cpu":
        return str(text).strip()
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r} was requested but no CUDA device is "
                                             "available here; use --device cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has "
                                             f"{torch.cuda.device_count()} CUDA device(s).")
        return str(text).strip()
    if dev.type == "mps" and torch.backends.mps.is_available():
        return str(text).strip()
    raise argparse.ArgumentTypeError(f"device {text!r} is not supported here; use cpu"
                                     + (" or cuda." if torch.cuda.is_available() else "."))


def _writable_place(path: Path, what: str) -> None:
    """The nearest existing folder above `path` is a folder we may write in."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {what} {str(path)!r}: {str(parent)!r} is "
                                         "a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {what} {str(path)!r}: no permission to "
                                         f"write in {str(parent)!r}; choose another place.")


def _nonempty(text: str, what: str) -> Path:
    if not str(text).strip():
        raise argparse.ArgumentTypeError(f"give a {what} path, not an empty string.")
    if "\0" in str(text):
        raise argparse.ArgumentTypeError(f"the {what} path contains a NUL character.")
    return Path(text)


def output_file(*suffixes: str) -> Callable[[str], str]:
    """A file path to write: not a folder, ending in one of `suffixes` (if given), in a place
    that can be written. Returns the string unchanged."""
    kinds = " or ".join(suffixes)

    def parse(text: str) -> str:
        path = _nonempty(text, "file")
        if str(text).endswith(("/", os.sep)) or path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file path"
                                             + (f" ending in {kinds}." if kinds else "."))
        if path.exists() and not path.is_file():
            raise argparse.ArgumentTypeError(f"{text!r} exists and is not a regular file.")
        if suffixes and path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(
                f"{text!r} must end in {kinds} (that is the format written); "
                f"e.g. {path.with_suffix(suffixes[0]).name}.")
        _writable_place(path, "file")
        return str(text)

    parse.__name__ = "output file"
    return parse


def output_dir(text: str) -> str:
    """A folder to write into: not an existing file, in a place that can be written."""
    path = _nonempty(text, "folder")
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder; give a folder "
                                         "path.")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"no permission to write in {text!r}.")
    else:
        _writable_place(path, "folder")
    return str(text)


def input_file(text: str) -> str:
    """An existing regular file to read (a folder, a device or a pipe is refused)."""
    path = _nonempty(text, "file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text!r} does not exist.")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file.")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular file.")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"no permission to read {text!r}.")
    return str(text)


def reader(read: Callable[[str], object], what: str) -> Callable[[str], object]:
    """The argparse type of a reader that raises ValueError naming the problem and the syntax
    (e.g. sampling.families.read_family)."""

    def parse(text: str) -> object:
        try:
            return read(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = what
    return parse


def scalar(kind: type) -> Callable[[str], object]:
    """The checked argparse type of a config field's Python type: int and float are finite and
    bounded in length (their ranges are the config's own `__post_init__` checks)."""
    return {int: int_in(), float: float_in()}.get(kind, kind)


def is_loopback(host: str) -> bool:
    """Whether `host` binds this machine only ('localhost', 127.x.x.x, ::1)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False
