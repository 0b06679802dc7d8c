"""Command line: ``python -m vi_dropout verify [--json PATH] [--quick]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def _write_json_atomic(path: str, payload) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vi_dropout")
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", help="the ELBO == dropout-loss equivalence report")
    p_verify.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p_verify.add_argument("--quick", action="store_true",
                          help="fewer Monte Carlo samples (same tolerances), under 2 minutes")
    p_verify.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    from .verify import format_table, run_verify

    t0 = time.perf_counter()
    rows = run_verify(quick=args.quick, show_progress=not args.no_progress)
    elapsed = time.perf_counter() - t0
    print(format_table(rows))
    print(f"({'quick' if args.quick else 'full'} run, {elapsed:.1f} s)")
    if args.json:
        _write_json_atomic(args.json, {"quick": args.quick, "seconds": elapsed, "rows": rows})
        print(f"rows written to {args.json}")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
