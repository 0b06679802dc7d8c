"""argparse ``type=`` helpers shared by the ``python -m comparisons`` subcommand modules."""

from __future__ import annotations

import argparse

__all__ = ["int_at_least"]


def int_at_least(name: str, minimum: int = 1):
    """argparse type: an integer ``>= minimum``; anything else is an ``ArgumentTypeError`` naming
    the option (``name``), the bound and what arrived.

    Example:
        >>> int_at_least("--steps")("3")
        3
    """

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {minimum}, got "
                                             f"{text!r}")
        return value

    return parse
