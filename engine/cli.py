"""The `cartwheel` command line: one entry point, one sub-command per job."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
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

    send = sub.add_parser("send", help="send a file of events (JSON lines or msgpack) to a running engine")
    send.add_argument("file", type=Path, help="events: JSON lines, or a msgpack stream of frames")
    send.add_argument("--config", metavar="FILE", help="find the engine's ingest socket from this config")
    send.add_argument("--unix", metavar="PATH", help="ingest UNIX socket (overrides the config)")
    send.add_argument("--tcp", metavar="HOST:PORT", help="ingest TCP address (overrides the config)")
    send.add_argument("--batch", type=int, default=100, help="events per frame (default 100)")
    send.add_argument("--json", action="store_true", help="print the summary as JSON")

    sim = sub.add_parser("simulate", help="preview what a flow would send for a file of events (no network)")
    sim.add_argument("file", type=Path, help="events: JSON lines or msgpack, with ts (unix seconds)")
    sim.add_argument("--config", metavar="FILE", help="stores, flows and channels to simulate (default: embedded)")
    sim.add_argument("--horizon", metavar="DURATION", help="how long to run after the last event (default: the longest flow)")

    demo = sub.add_parser("demo", help="engine + a simulated shop on a scaled clock, with live progress and a summary")
    demo.add_argument("--shoppers", type=int, default=3000, help="simulated shoppers (default 3000)")
    demo.add_argument("--speed", type=float, default=3600.0, help="simulated seconds per real second (default 3600)")
    demo.add_argument("--hours", type=float, default=54.0, help="simulated hours to run (default 54)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument("--dir", type=Path, default=Path("run/demo"), help="state and outbox directory (default run/demo)")

    from engine.cli_clients import add_parsers

    add_parsers(sub)

    from bench.loadgen import add_parser as add_loadgen_parser

    add_loadgen_parser(sub)

    bench = sub.add_parser(
        "bench", help="run a benchmark scenario (wheel, memory, ingest, channels, snapshot, e2e, peers, all) or 'report'")
    bench.add_argument("name", help="scenario: wheel, memory, ingest, channels, snapshot, e2e, peers, all; "
                                    "or 'report' (bench/out/*.json -> bench/RESULTS.md and charts)")
    bench.add_argument("--in", dest="in_dir", default="bench/out", help="report: directory of JSON results")
    bench.add_argument("--md", default="bench/RESULTS.md", help="report: the markdown file to write")
    from bench.harness import add_scenario_options

    add_scenario_options(bench)
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _install_uvloop() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


#: exit status of a stop forced by a second signal (README "Using it")
EXIT_FORCED = 5


def _force_stop() -> None:
    """A second SIGTERM/SIGINT while stopping: the operator will not wait for the drain and the final
    snapshot (10 M carts take a while; a store that hangs takes its timeout). Exit at once: what a
    restart finds is what a crash leaves, the last snapshot plus the journal."""
    print("cartwheel: second signal: stopped at once, without the final snapshot", file=sys.stderr, flush=True)
    os._exit(EXIT_FORCED)


async def _run_engine(config_path: str | None) -> int:
    from engine.app import Engine
    from engine.config import load_config

    config = load_config(config_path)
    engine = Engine(config, base_dir=Path.cwd())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from engine.stores.base import StoreError

    starting = asyncio.ensure_future(engine.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # SIGTERM/SIGINT while starting (waiting for the store, restoring): stop now
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        # As after a crash (nothing was accepted yet): no final snapshot of a half-restored state.
        await engine.ingest.close()
        if engine.ops is not None:
            await engine.ops.close()
        print("cartwheel: stopped while starting", file=sys.stderr, flush=True)
        return 0
    stopping.cancel()
    try:
        starting.result()
    except (StoreError, OSError) as exc:  # unreadable or foreign data (names the key), an address in use, ...
        print(f"cartwheel: cannot start: {exc}", file=sys.stderr)
        if engine.ops is not None:
            await engine.ops.close()  # (the admin socket starts before ingest: leave no socket file behind)
        return 3
    tcp = engine.ingest.tcp_address
    shown = "-" if tcp is None else f"[{tcp[0]}]:{tcp[1]}" if ":" in tcp[0] else f"{tcp[0]}:{tcp[1]}"
    print(f"cartwheel: running (ingest {shown} {engine.ingest.unix_path or ''}, "
          f"admin {engine.ops.admin_path if engine.ops else '-'}, store {engine.store.describe()}); Ctrl-C stops", flush=True)
    await stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _force_stop)
    print("cartwheel: stopping (draining, final snapshot; a second Ctrl-C or SIGTERM stops at once, without it)",
          flush=True)
    await engine.stop()
    if engine.final_snapshot_error is not None:
        print(f"cartwheel: stopped, but the final snapshot failed ({engine.final_snapshot_error}); what was "
              "accepted since the last snapshot is only in the journal, if journaling, and is lost otherwise",
              file=sys.stderr, flush=True)
        return 4
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


def _load(path: str | None) -> object | None:
    from engine.config import ConfigError, check_sections, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    problems = check_sections(config)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return None
    return config


def _unreadable(command: str, path: Path) -> bool:
    """Say so (and True) when ``path`` cannot be read as a file of events: missing, a directory, no access.
    Checked before anything else, so that a reading error is never taken for an engine's."""
    if not path.exists():
        print(f"cartwheel {command}: no such file: {path}", file=sys.stderr)
        return True
    if path.is_dir():
        print(f"cartwheel {command}: {path} is a directory, not a file of events", file=sys.stderr)
        return True
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        print(f"cartwheel {command}: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return True
    return False


def cmd_send(args: argparse.Namespace) -> int:
    import json

    from engine.send import print_summary, send_file

    if _unreadable("send", args.file):
        return 2
    if args.batch < 1:
        print("cartwheel send: --batch must be at least 1", file=sys.stderr)
        return 2
    tcp = unix = None
    max_frame_bytes = 1 << 20  # the engine's default; a --config gives the engine's own
    if args.config and (args.tcp or args.unix):
        config = _load(args.config)
        if config is None:
            return 2
        max_frame_bytes = config.engine.max_frame_bytes  # type: ignore[attr-defined]
        args.batch = min(args.batch, config.engine.max_batch)  # type: ignore[attr-defined]
    if args.tcp:
        from engine.config import _Bad, _host_port

        address = args.tcp if args.tcp.rpartition(":")[0] else "127.0.0.1" + args.tcp  # ":7780"
        try:  # the syntax of engine.ingest_tcp: "[::1]:7780" for IPv6
            tcp = _host_port("127.0.0.1:7780")(address)
            if tcp is None:
                raise _Bad('"HOST:PORT" like "127.0.0.1:7780"')
        except _Bad as bad:
            expected = bad.expected.replace(' or "" to disable', "")
            print(f"cartwheel send: --tcp: expected {expected}, got {args.tcp!r}", file=sys.stderr)
            return 2
    elif args.unix:
        unix = args.unix
    else:
        config = _load(args.config)
        if config is None:
            return 2
        unix, tcp = config.engine.ingest_unix, config.engine.ingest_tcp  # type: ignore[attr-defined]
        max_frame_bytes = config.engine.max_frame_bytes  # type: ignore[attr-defined]
        args.batch = min(args.batch, config.engine.max_batch)  # type: ignore[attr-defined]  # (a larger frame is refused whole)
        if unix and tcp and not Path(unix).exists():
            unix = None  # the engine may listen on TCP only
        if not unix and not tcp:
            print(f"cartwheel send: {config.source} has no ingest listener (ingest_unix and ingest_tcp are both "  # type: ignore[attr-defined]
                  "disabled): give --unix PATH or --tcp HOST:PORT", file=sys.stderr)
            return 2
    try:
        summary = asyncio.run(send_file(args.file, tcp=tcp, unix=unix, batch=args.batch, progress=not args.json,
                                        max_frame_bytes=max_frame_bytes))
    except (ConnectionError, FileNotFoundError, OSError) as exc:
        where = unix or (f"{tcp[0]}:{tcp[1]}" if tcp else "?")
        print(f"cartwheel send: cannot reach the engine at {where}: {exc}. Is `cartwheel run` running?", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    return 0 if not summary["problems"] and summary["rejected"] == 0 else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    from actors.durations import parse_duration
    from engine.simulate import run_simulate

    if _unreadable("simulate", args.file):
        return 2
    config = _load(args.config)
    if config is None:
        return 2
    horizon = None
    if args.horizon:
        try:
            horizon = parse_duration(args.horizon)
        except ValueError as exc:
            print(f"cartwheel simulate: --horizon: {exc}", file=sys.stderr)
            return 2
    return run_simulate(config, args.file, horizon_s=horizon)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "run":
        return cmd_run(args)
    if args.command == "send":
        return cmd_send(args)
    if args.command == "simulate":
        return cmd_simulate(args)
    if args.command == "demo":
        from engine.demo import run_demo

        _install_uvloop()
        return run_demo(shoppers=args.shoppers, speed=args.speed, hours=args.hours, seed=args.seed, directory=args.dir)
    from engine.cli_clients import CLIENT_COMMANDS, run_client

    if args.command in CLIENT_COMMANDS:
        return run_client(args)
    if args.command == "loadgen":
        from bench.loadgen import main as loadgen_main

        return loadgen_main(args)
    if args.command == "bench":
        if args.name == "report":
            from bench.report import main as report_main

            return report_main(args.in_dir, args.md)
        from bench.harness import run_scenario

        return run_scenario(args.name, quick=args.quick, as_json=args.json, out_dir=args.out, sizes=args.sizes)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
