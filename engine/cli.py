"""The `cartwheel` command line: one entry point, one sub-command per job."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cartwheel",
        description="Abandoned-cart recovery engine (see README.md).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser("bench", help="run a benchmark scenario (wheel, ...)")
    bench.add_argument("name", help="scenario name: wheel")
    bench.add_argument("--quick", action="store_true", help="small sizes, finishes in under 60 s")
    bench.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    bench.add_argument("--out", default="bench/out", help="directory for the JSON result (default bench/out)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "bench":
        from bench.harness import run_scenario

        return run_scenario(args.name, quick=args.quick, as_json=args.json, out_dir=args.out)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
