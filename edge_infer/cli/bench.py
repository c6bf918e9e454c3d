"""`edge-infer bench`: flags onto a bench plan, the sweep's progress on stderr, the report on stdout."""

from __future__ import annotations

import argparse
import json
import sys

from ..bench.load import WARMUP_S, format_load, run_load_worker
from ..bench.plan import BenchPlan, default_threads, find_models
from ..bench.report import plot, warnings_for, write_report
from ..bench.runner import run_bench
from ..config import load_config
from ..errors import EXIT_OK, ConfigError
from ..sources.registry import source_from_argument
from .arguments import numbers


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser("bench", help="measure FPS and latency per model, thread count and delegate")
    bench.add_argument("models", nargs="*", metavar="MODEL", help="names, paths or directories (default: every "
                       "mobilenet*.tflite, and *.hef where HailoRT is, in the model directories)")
    bench.add_argument("--models-dir")
    bench.add_argument("--threads", help="comma-separated thread counts (default: 1 and all cores)")
    bench.add_argument("--runs", type=int, help="timed invokes per configuration (default 200; --quick 40)")
    bench.add_argument("--warmup", type=int, help="untimed invokes and frames first (default 20; --quick 5)")
    bench.add_argument("--frames", type=int, help="frames through the pipeline (default 300; --quick 60)")
    bench.add_argument("--seconds", type=float, help="each measurement lasts at least this long (default 2; "
                       "--quick 0.5)")
    bench.add_argument("--source", help="measure the pipeline on this source (camera, video) instead of a "
                       "synthetic 640x480 frame")
    bench.add_argument("--config", help="measure this configuration's whole load instead: every camera and region "
                       "as `edge-infer run` runs them (results per second each, CPU, peak RSS)")
    bench.add_argument("--reference", action="store_true", help="also time a bare LiteRT invoke() loop")
    bench.add_argument("--quick", action="store_true", help="fewer runs, all cores only: under a minute")
    output = bench.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_const", const="json", dest="format")
    output.add_argument("--csv", action="store_const", const="csv", dest="format")
    output.add_argument("--markdown", action="store_const", const="markdown", dest="format")
    bench.add_argument("--plot", metavar="FILE.png", help="plot FPS per alpha and top-1 vs latency (matplotlib)")
    bench.set_defaults(handler=command_bench, format="table")


def parse_threads(text: str | None) -> tuple[int, ...]:
    if text is None:
        return default_threads()
    threads = tuple(numbers("--threads", text, int))
    if any(t < 1 for t in threads):
        raise ConfigError(f"--threads: every thread count must be at least 1, got {text}")
    return threads


def command_bench(args: argparse.Namespace) -> int:
    if args.config:
        return command_bench_config(args)
    quick = args.quick
    threads = parse_threads(args.threads) if args.threads or not quick else default_threads()[-1:]
    for flag, value in (("--runs", args.runs), ("--warmup", args.warmup), ("--frames", args.frames)):
        if value is not None and value < (0 if flag == "--warmup" else 1):
            raise ConfigError(f"{flag}: must be at least {0 if flag == '--warmup' else 1}, got {value}")
    plan = BenchPlan(
        models=tuple(find_models(args.models, args.models_dir)), threads=threads,
        warmup=args.warmup if args.warmup is not None else (5 if quick else 20),
        runs=args.runs or (40 if quick else 200), frames=args.frames or (60 if quick else 300),
        seconds=args.seconds if args.seconds is not None else (0.5 if quick else 2.0),
        reference=args.reference, source=source_from_argument(args.source) if args.source else None)
    report = run_bench(plan, lambda line: print(line, file=sys.stderr, flush=True))
    for warning in warnings_for(report.conditions):
        print(f"edge-infer: warning: {warning}", file=sys.stderr)
    write_report(report, args.format, sys.stdout)
    if args.plot:
        plot(report, args.plot)
        print(f"edge-infer: plot written to {args.plot}", file=sys.stderr)
    return EXIT_OK


def command_bench_config(args: argparse.Namespace) -> int:
    """`bench --config FILE`: the configuration's own load, measured for --seconds (default 20; --quick 5)."""
    if args.models or args.source:
        raise ConfigError("--config measures the configuration's own cameras and models: give no MODEL or --source")
    load_config(args.config)  # its errors now, with the file and line, before a worker starts
    seconds = args.seconds if args.seconds is not None else (5.0 if args.quick else 20.0)
    if seconds <= 0:
        raise ConfigError(f"--seconds: must be more than 0, got {seconds:g}")
    print(f"edge-infer: measuring {args.config} for {seconds:g} s (after {WARMUP_S:g} s of warm-up)", file=sys.stderr)
    load = run_load_worker(args.config, seconds)
    if args.format == "json":
        print(json.dumps(load.to_json_dict(), indent=2))
    else:
        print(format_load(load))
    return EXIT_OK
