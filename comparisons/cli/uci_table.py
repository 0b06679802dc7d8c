"""The ``uci-table`` subcommand of ``python -m comparisons``: one comparison of every method on
the UCI data sets from the ``records.csv`` of several ``uci`` runs, with the published numbers
beside and a paired ranking (:mod:`comparisons.report.uci_comparison`).

Parses the arguments, calls :func:`comparisons.report.uci_comparison.write_comparison_report`
and prints where it wrote: ``report.md``, ``records.csv`` (combined, with ``variant`` and
``source_file``) and ``ranking.csv`` under ``--out``. Each records file is read by
:func:`comparisons.runner.records_file.read_records`, which refuses one that is empty, has a
header but no records, is truncated (does not end with a newline: its last record may be cut
mid-value), has a malformed row, a value that is not a finite number or a record twice, or
disagrees with the ``records.json`` or ``cells/`` beside it. That, a ``--records`` path that
does not exist, a folder without ``records.csv``, or an ``--out`` that is the folder of a records
file being read (it would overwrite that run's ``records.csv`` and ``report.md``) is one
``error: ...`` line and exit code 2, before anything is written.

Usage::

    python -m comparisons uci-table --records docs/uci/x10 --records docs/uci/x100 \\
        --records docs/uci/gp/records.csv --out outputs/uci_table
    # a re-run of the x100 protocol against the committed records, split by split
    python -m comparisons uci-table --records outputs/uci_x100 --against docs/uci/x100 \\
        --against docs/uci/mc_x100_large --out outputs/uci_x100_check

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_parser(parser.add_subparsers(dest="command"))  # doctest: +ELLIPSIS
    ArgumentParser(...)
    >>> parser.parse_args(["uci-table", "--records", "a", "--records", "b", "--out", "/tmp/t"]
    ...                   ).records
    ['a', 'b']
"""

from __future__ import annotations

import argparse

from comparisons.cli.types import add_out_argument

__all__ = ["COMMAND", "add_parser", "run"]

COMMAND = "uci-table"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``uci-table`` subcommand to ``subparsers`` (from ``add_subparsers``) and return
    it (its ``func`` and ``handler`` are :func:`run`)."""
    p = subparsers.add_parser(
        COMMAND, help="one table of every method on the UCI data sets from several uci runs, "
                      "with published numbers and a paired ranking",
        description="Combine the records.csv of several `python -m comparisons uci` runs into "
                    "one comparison: mean ± SE over splits per data set and method (with its "
                    "epochs multiplier when it ran at several), the published numbers beside, "
                    "and the best method per data set against the next, paired by split.")
    p.add_argument("--records", action="append", required=True, metavar="PATH",
                   help="records.csv of a `python -m comparisons uci` run, or its output folder; "
                        "repeat for several runs (the same data set, method, epochs multiplier, "
                        "split and metric in two of them is an error)")
    p.add_argument("--published", default=None, metavar="PATH",
                   help="CSV of published numbers (dataset, method, setting, metric, mean, "
                        "spread, spread_kind, source; default: the packaged "
                        "comparisons/report/data/published_uci.csv)")
    p.add_argument("--all-published", action="store_true",
                   help="show every published version (default: the paper's corrected arXiv v6 "
                        "tables, the README's 2018 grid search, VI and deep ensembles; the CSV "
                        "keeps all of them)")
    p.add_argument("--against", action="append", default=None, metavar="PATH",
                   help="records of an earlier run of the same protocol (records.csv or its "
                        "folder; repeatable): report.md ends with this run against it, split "
                        "by split on the splits both have (paired difference, in units of the "
                        "earlier SE, cell times), also written to reproduction.csv")
    add_out_argument(p, help="output directory (created if needed): report.md, records.csv, "
                             "ranking.csv (and reproduction.csv with --against)")
    p.set_defaults(func=run, handler=run)
    return p


def run(args) -> int:
    """Write the comparison with
    :func:`~comparisons.report.uci_comparison.write_comparison_report` and print the output
    paths. Returns 0.

    Raises:
        FileNotFoundError: a ``--records`` or ``--published`` path that does not exist.
        ValueError: a records file the reader refuses, records given twice, or an ``--out``
            that would overwrite the files being read (``python -m comparisons`` prints it as
            one line and exits with 2).
    """
    from comparisons.report.uci_comparison import SHOWN_PUBLISHED_SETTINGS, write_comparison_report
    from comparisons.runner.folder_lock import FolderLock

    shown = None if args.all_published else SHOWN_PUBLISHED_SETTINGS
    with FolderLock(args.out):  # one run at a time in OUT
        paths = write_comparison_report(args.records, args.out, published_path=args.published,
                                        published_settings=shown,
                                        against_paths=getattr(args, "against", None))
    print("outputs: " + ", ".join(str(p) for p in paths.values()))
    return 0
