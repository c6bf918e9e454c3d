"""`edge-infer models ...` and `edge-infer bench`: the model zoo and the benchmark on the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .bench import BenchPlan, default_threads, find_models, plot, run_bench, warnings_for, write_report
from .classifier import open_interpreter
from .errors import EXIT_OK, ConfigError, ModelError
from .graph import interpreter_cost
from .labels import metadata_labels
from .model import DEFAULT_MODEL_DIRS, model_dirs, read_model, resolve_model, tensor_spec
from .pull import progress_bar, pull
from .runtime import load_runtime
from .sources import source_from_argument
from .zoo import build_manifest, close_matches, find_entry


def add_commands(commands: Any) -> None:
    models = commands.add_parser("models", help="list, download and inspect models")
    verbs = models.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the known models, with published accuracy and cost")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=command_list)
    fetch = verbs.add_parser("pull", help="download models into the models directory (verified, atomic)")
    fetch.add_argument("names", nargs="+", metavar="NAME")
    fetch.add_argument("--models-dir", help="where to put them (default: $EDGE_INFER_MODELS, else "
                       "~/.local/share/edge-infer/models, or /var/lib/edge-infer/models as root)")
    fetch.set_defaults(handler=command_pull)
    inspect = verbs.add_parser("inspect", help="tensors, ops, labels, MACs and parameters of a model")
    inspect.add_argument("model")
    inspect.add_argument("--models-dir")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=command_inspect)

    builder = verbs.add_parser("build", help="build a MobileNet as a TFLite model (needs edge-infer[build])",
                               description="Build keras.applications' MobileNet V1/V2 as a TFLite file that "
                               "carries its labels and input normalization. Needs pip install 'edge-infer[build]'.")
    builder.add_argument("--arch", choices=("mobilenet_v1", "mobilenet_v2"), default="mobilenet_v1")
    builder.add_argument("--alpha", type=float, help="width multiplier (V1: 0.25-1.0; V2: 0.35-1.4)")
    builder.add_argument("--resolution", type=int, help="input side (V1: 128-224; V2: 96-224)")
    builder.add_argument("--weights", default="none", help="imagenet (downloads Keras's weights), none (random: "
                         "for speed measurements), or a fine-tuned Keras model file")
    builder.add_argument("--classes", type=int, help="output classes with --weights none (default 1000)")
    builder.add_argument("--quantize", default="uint8", help="int8, uint8 (full-integer; default), float16, float32")
    builder.add_argument("--calibration", help="a directory of images for full-integer quantization")
    builder.add_argument("--labels", help="labels file to pack into the model (default: ImageNet's with "
                         "--weights imagenet, else class N)")
    builder.add_argument("--output", help="the .tflite to write (default: <arch>_<alpha>_<res>_<quantize>.tflite)")
    builder.add_argument("--grid", action="store_true", help="build MobileNet V1 at every --alphas x --resolutions "
                         "into --output-dir, skipping files already built")
    builder.add_argument("--alphas", default="0.25,0.5,0.75,1.0", help="with --grid (default: all four)")
    builder.add_argument("--resolutions", default="128,160,192,224", help="with --grid (default: all four)")
    builder.add_argument("--output-dir", default=".", help="with --grid")
    builder.add_argument("--edgetpu", action="store_true", help="then compile with edgetpu_compiler (if installed)")
    builder.set_defaults(handler=command_build)

    bench = commands.add_parser("bench", help="measure FPS and latency per model, thread count and delegate")
    bench.add_argument("models", nargs="*", metavar="MODEL", help="names, paths or directories (default: every "
                       "mobilenet*.tflite in the model directories)")
    bench.add_argument("--models-dir")
    bench.add_argument("--threads", help="comma-separated thread counts (default: 1 and all cores)")
    bench.add_argument("--runs", type=int, help="timed invokes per configuration (default 200; --quick 40)")
    bench.add_argument("--warmup", type=int, help="untimed invokes and frames first (default 20; --quick 5)")
    bench.add_argument("--frames", type=int, help="frames through the pipeline (default 300; --quick 60)")
    bench.add_argument("--seconds", type=float, help="each measurement lasts at least this long (default 2; "
                       "--quick 0.5)")
    bench.add_argument("--source", help="measure the pipeline on this source (camera, video) instead of a "
                       "synthetic 640x480 frame")
    bench.add_argument("--reference", action="store_true", help="also time a bare LiteRT invoke() loop")
    bench.add_argument("--quick", action="store_true", help="fewer runs, all cores only: under a minute")
    output = bench.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_const", const="json", dest="format")
    output.add_argument("--csv", action="store_const", const="csv", dest="format")
    output.add_argument("--markdown", action="store_const", const="markdown", dest="format")
    bench.add_argument("--plot", metavar="FILE.png", help="plot FPS per alpha and top-1 vs latency (matplotlib)")
    bench.set_defaults(handler=command_bench, format="table")


def pull_dir(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("EDGE_INFER_MODELS"):
        return Path(os.environ["EDGE_INFER_MODELS"])
    user_dir, system_dir = DEFAULT_MODEL_DIRS
    return Path(system_dir if os.geteuid() == 0 else user_dir).expanduser()


def present(name: str) -> bool:
    return any((directory / f"{name}.tflite").is_file() for directory in model_dirs(None))


def command_list(args: argparse.Namespace) -> int:
    manifest = build_manifest()
    if args.json:
        print(json.dumps([{**entry.__dict__, "present": present(entry.name)} for entry in manifest], indent=2))
        return EXIT_OK
    print(f"{'model':38} {'type':8} {'top-1 %':>7} {'MMACs':>6} {'Mparams':>7}  here")
    for entry in manifest:
        top1 = f"{entry.top1:.1f}" if entry.top1 is not None else "-"
        kind = "edgetpu" if entry.edgetpu else entry.input_type
        print(f"{entry.name:38} {kind:8} {top1:>7} {entry.macs_m:>6.0f} {entry.params_m:>7.2f}  "
              f"{'yes' if present(entry.name) else ''}")
    return EXIT_OK


def unknown_model(name: str) -> ModelError:
    close = close_matches(build_manifest(), name)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see 'edge-infer models list'"
    return ModelError(f"unknown model '{name}'{hint}")


def command_pull(args: argparse.Namespace) -> int:
    manifest = build_manifest()
    entries = [find_entry(manifest, name) for name in args.names]
    for name, entry in zip(args.names, entries, strict=False):
        if entry is None:
            raise unknown_model(name)
    directory = pull_dir(args.models_dir)
    mirror = os.environ.get("EDGE_INFER_MODEL_MIRROR")
    for entry in entries:
        assert entry is not None
        fetched = pull(entry, directory, mirror, progress_bar(entry.name))
        state = "downloaded" if fetched else "already there"
        print(f"{entry.name}: {state} ({directory / entry.file_name})", file=sys.stderr)
    return EXIT_OK


def inspect_model(path: Path) -> dict[str, Any]:
    model = read_model(path)
    interpreter = open_interpreter(load_runtime(), model)
    cost = interpreter_cost(interpreter)

    def tensor(detail: dict[str, Any]) -> dict[str, Any]:
        spec = tensor_spec(detail)
        return {"name": detail["name"], "shape": list(spec.shape), "dtype": spec.dtype.__name__,
                "scale": spec.scale, "zero_point": spec.zero_point}

    labels = metadata_labels(model.content)
    entry = find_entry(build_manifest(), model.name)
    return {
        "model": model.name, "path": str(path), "size_mb": round(len(model.content) / 1e6, 3),
        "inputs": [tensor(d) for d in interpreter.get_input_details()],
        "outputs": [tensor(d) for d in interpreter.get_output_details()],
        "ops": cost.ops, "needs_edgetpu": model.needs_edgetpu,
        "labels": f"model metadata ({len(labels)} labels)" if labels else "none in the model (use --labels)",
        "macs_m": cost.macs_m, "params_m": cost.params_m,
        "published": {"top1": entry.top1, "macs_m": entry.macs_m, "params_m": entry.params_m} if entry else None,
    }


def command_inspect(args: argparse.Namespace) -> int:
    try:
        path = resolve_model(args.model, args.models_dir)
    except ModelError:
        if find_entry(build_manifest(), args.model) is None and os.sep not in args.model:
            raise unknown_model(args.model) from None
        raise
    info = inspect_model(path)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(f"{info['model']}  ({info['path']}, {info['size_mb']} MB)")
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            quant = f", scale {t['scale']:.6g} zero point {t['zero_point']}" if t["scale"] else ""
            print(f"  {kind[:-1]:6} {t['name']}: {t['shape']} {t['dtype']}{quant}")
    print("  ops:   " + ", ".join(f"{name} x{count}" for name, count in info["ops"].items()))
    print(f"  labels: {info['labels']}")
    print(f"  Edge TPU: {'required (compiled with edgetpu_compiler)' if info['needs_edgetpu'] else 'not needed'}")
    if info["macs_m"] is not None:
        published = info["published"]
        versus = (f" (published: {published['macs_m']} M MACs, {published['params_m']} M parameters, "
                  f"top-1 {published['top1']} %)" if published else "")
        print(f"  cost:  {info['macs_m']} M MACs, {info['params_m']} M parameters{versus}")
    else:
        print("  cost:  not countable: the graph is one Edge TPU custom op")
    return EXIT_OK


def numbers(flag: str, text: str, kind: type) -> list[Any]:
    try:
        return [kind(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag}: '{text}' is not a comma-separated list of numbers") from None


def command_build(args: argparse.Namespace) -> int:
    from .build import BuildRequest, build, compile_for_edgetpu

    if args.edgetpu and args.quantize not in ("int8", "uint8"):
        raise ConfigError("--edgetpu needs a full-integer model: --quantize uint8 or int8")
    common = {"weights": args.weights, "classes": args.classes, "quantize": args.quantize,
              "calibration": args.calibration, "labels": args.labels}
    if args.grid:
        requests = [BuildRequest("mobilenet_v1", alpha, resolution, output=str(Path(args.output_dir) / BuildRequest(
                        "mobilenet_v1", alpha, resolution, quantize=args.quantize).default_name()), **common)
                    for alpha in numbers("--alphas", args.alphas, float)
                    for resolution in numbers("--resolutions", args.resolutions, int)]
    else:
        if args.alpha is None or args.resolution is None:
            raise ConfigError("--alpha and --resolution are needed (or --grid)")
        requests = [BuildRequest(args.arch, args.alpha, args.resolution, output=args.output, **common)]
    for request in requests:
        target = Path(request.output or request.default_name())
        if args.grid and target.is_file():
            print(f"{target}: already built", file=sys.stderr)
            continue
        result = build(request)
        print(f"{result.path}: {result.size_bytes / 1e6:.2f} MB, {result.cost.macs_m} M MACs, "
              f"{result.cost.params_m} M parameters", file=sys.stderr)
        if args.edgetpu:
            print(f"{compile_for_edgetpu(result.path)}: compiled for the Edge TPU", file=sys.stderr)
    return EXIT_OK


def parse_threads(text: str | None) -> tuple[int, ...]:
    if text is None:
        return default_threads()
    threads = tuple(numbers("--threads", text, int))
    if any(t < 1 for t in threads):
        raise ConfigError(f"--threads: every thread count must be at least 1, got {text}")
    return threads


def command_bench(args: argparse.Namespace) -> int:
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
    for warning in warnings_for(report):
        print(f"edge-infer: warning: {warning}", file=sys.stderr)
    write_report(report, args.format, sys.stdout)
    if args.plot:
        plot(report, args.plot)
        print(f"edge-infer: plot written to {args.plot}", file=sys.stderr)
    return EXIT_OK
