"""`edge-infer models ...`: list, pull, inspect and build models on the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import EXIT_OK, ConfigError, ModelError
from ..models.files import IMX500_NETWORKS_DIR, model_dirs, pull_dir, resolve_model
from ..models.inspect import inspect_model
from ..models.pull import MIRROR_ENV, insecure_allowed, progress_bar, pull
from ..models.zoo import build_manifest, close_matches, find_entry
from .arguments import numbers


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser("models", help="list, download and inspect models")
    verbs = models.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the known models, with published accuracy and cost")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=command_list)
    fetch = verbs.add_parser("pull", help="download models into the models directory (verified, atomic)")
    fetch.add_argument("names", nargs="+", metavar="NAME")
    fetch.add_argument("--models-dir", help="where to put them (default: $EDGE_INFER_MODELS, else "
                       "~/.local/share/edge-infer/models, or /var/lib/edge-infer/models as root)")
    fetch.add_argument("--allow-insecure-mirror", action="store_true",
                       help="let $EDGE_INFER_MODEL_MIRROR be an http:// (or other non-https) URL for models that "
                       "have no published hash to check them against (also: EDGE_INFER_ALLOW_INSECURE_MIRROR=1)")
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
    builder.add_argument("--extractor", action="store_true", help="an embedding extractor instead of a classifier: "
                         "the output is the pooled features [1, N] (Keras include_top=False, pooling avg; a "
                         "--weights file is cut at its last global average pooling), a base for edge-infer teach "
                         "train --base FILE")
    builder.add_argument("--quantize", default="int8", help="int8 (full-integer, int8 in and out; default), uint8 "
                         "(full-integer, uint8 in and out), float16, float32")
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



def present(file_name: str) -> bool:
    """In a model directory; an AI Camera network also where apt's imx500-models puts them."""
    directories = [*model_dirs(None), *([Path(IMX500_NETWORKS_DIR)] if file_name.endswith(".rpk") else [])]
    return any((directory / file_name).is_file() for directory in directories)


def command_list(args: argparse.Namespace) -> int:
    manifest = build_manifest()
    if args.json:
        print(json.dumps([{**entry.__dict__, "present": present(entry.file_name)} for entry in manifest], indent=2))
        return EXIT_OK
    print(f"{'model':38} {'type':8} {'top-1 %':>7} {'MMACs':>6} {'Mparams':>7}  here")
    for entry in manifest:
        top1 = f"{entry.top1:.1f}" if entry.top1 is not None else "-"
        print(f"{entry.name:38} {entry.kind:8} {top1:>7} {entry.macs_m:>6.0f} {entry.params_m:>7.2f}  "
              f"{'yes' if present(entry.file_name) else ''}")
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
    mirror = os.environ.get(MIRROR_ENV)
    allow_insecure = args.allow_insecure_mirror or insecure_allowed()
    for entry in entries:
        assert entry is not None
        fetched = pull(entry, directory, mirror, progress_bar(entry.name), allow_insecure=allow_insecure)
        state = "downloaded" if fetched else "already there"
        print(f"{entry.name}: {state} ({directory / entry.file_name})", file=sys.stderr)
    return EXIT_OK


def command_inspect(args: argparse.Namespace) -> int:
    try:
        path = resolve_model(args.model, args.models_dir)
    except ModelError:
        if find_entry(build_manifest(), args.model) is None and os.sep not in args.model:
            raise unknown_model(args.model) from None
        raise
    report = inspect_model(path)
    if args.json:
        print(json.dumps(report.to_json_dict(), indent=2))
        return EXIT_OK
    info = report.to_json_dict()
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


def command_build(args: argparse.Namespace) -> int:
    from ..training.build import BuildRequest, build, compile_for_edgetpu

    if args.edgetpu and args.quantize not in ("int8", "uint8"):
        raise ConfigError("--edgetpu needs a full-integer model: --quantize uint8 or int8")
    common = {"weights": args.weights, "classes": args.classes, "quantize": args.quantize,
              "calibration": args.calibration, "labels": args.labels, "extractor": args.extractor}
    if args.grid:
        requests = [BuildRequest("mobilenet_v1", alpha, resolution, output=str(Path(args.output_dir) / BuildRequest(
                        "mobilenet_v1", alpha, resolution, quantize=args.quantize,
                        extractor=args.extractor).default_name()), **common)
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
        embedding = f", embedding [1, {result.embedding}]" if result.embedding is not None else ""
        print(f"{result.path}: {result.size_bytes / 1e6:.2f} MB, {result.cost.macs_m} M MACs, "
              f"{result.cost.params_m} M parameters{embedding}", file=sys.stderr)
        if args.edgetpu:
            print(f"{compile_for_edgetpu(result.path)}: compiled for the Edge TPU", file=sys.stderr)
    return EXIT_OK
