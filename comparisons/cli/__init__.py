"""The command line ``python -m comparisons``: one thin module per subcommand."""

from __future__ import annotations

__all__: list[str] = []
