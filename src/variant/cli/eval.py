"""`variant eval` (being written)."""


def register(sub) -> None:
    sub.add_parser("eval", help="evaluate sample quality (being written)")
