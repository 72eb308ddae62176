"""`variant`: one entry point, one module per subcommand.

Each module in COMMANDS defines `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the handler. Handlers only parse arguments and call the public API.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ..models.convert import CheckpointError

COMMANDS = [
    "plan",
    "sample",
    "demo",
    "train",
    "eval",
    "train-metric",
    "train-tokenizer",
    "tokenize",
    "bench",
    "tune",
    "analyze",
    "studio",
    "serve",
    "quantize",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="variant",
        description="VARiant: elastic-depth VAR supernets (sample, train, evaluate, benchmark).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, CheckpointError) as err:
        print(f"variant {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter shutdown quiet
        return 0
    except OSError as err:  # a file the argument checks could not foresee (a full disk, a race)
        message = (f"{err.strerror}: {err.filename}" if err.strerror and err.filename
                   else str(err))
        print(f"variant {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"variant {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
