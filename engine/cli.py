"""The `cartwheel` command line: one entry point, one sub-command per job."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cartwheel",
        description="Abandoned-cart recovery engine (see README.md).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the engine (ingest, timers, channels, admin socket)")
    run.add_argument("--config", metavar="FILE", help="TOML config (default: the embedded default)")
    run.add_argument("--check", action="store_true", help="validate the config, print every problem, exit")
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")

    bench = sub.add_parser("bench", help="run a benchmark scenario (wheel, memory, channels, all)")
    bench.add_argument("name", help="scenario name: wheel, memory, channels, all")
    bench.add_argument("--quick", action="store_true", help="small sizes, finishes in under 60 s")
    bench.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    bench.add_argument("--out", default="bench/out", help="directory for the JSON result (default bench/out)")
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _install_uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _run_engine(config_path: str | None) -> int:
    from engine.app import Engine
    from engine.config import load_config

    config = load_config(config_path)
    engine = Engine(config, base_dir=Path.cwd())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    print(f"cartwheel: running (ingest {engine.ingest.tcp_address or '-'} {engine.ingest.unix_path or ''}, "
          f"admin {engine.ops.admin_path if engine.ops else '-'}, store {engine.store.describe()}); Ctrl-C stops", flush=True)
    await stop.wait()
    print("cartwheel: stopping (draining, final snapshot)", flush=True)
    await engine.stop()
    print(f"cartwheel: stopped; {len(engine.registry)} carts in the final snapshot", flush=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from engine.config import ConfigError, check_config_file, check_sections, load_config

    if args.check:
        return check_config_file(args.config)
    _setup_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    problems = check_sections(config)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    _install_uvloop()
    return asyncio.run(_run_engine(args.config))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "run":
        return cmd_run(args)
    if args.command == "bench":
        from bench.harness import run_scenario

        return run_scenario(args.name, quick=args.quick, as_json=args.json, out_dir=args.out)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
