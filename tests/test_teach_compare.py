"""`edge-infer teach train DATASET --compare [BASE ...]`: held-out accuracy beside speed and size per base, on a
dataset composed from the photos in ../shared, with the real models there; and the ranking on rows made up to be
known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import error_lines
from test_teach import compose

from edge_infer.models.zoo import DEFAULT_MODEL, build_manifest, find_entry
from edge_infer.teach.compare import DEFAULT_BASES, BaseRow, Comparison, Skipped, format_comparison, suggest

HERE = ("mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.5_160_quant", "mobilenet_v1_0.75_192_quant", DEFAULT_MODEL)


def row(model: str, accuracy: float | None, per_s: float, alpha: float | None = 0.25) -> BaseRow:
    return BaseRow(base=model, model=model, arch="mobilenet_v1", alpha=alpha, resolution=128, embedding=256,
                   held_out_accuracy=accuracy, folds=None if accuracy is None else 5, inferences_per_s=per_s,
                   latency_ms=1000 / per_s, model_mb=0.3, embed_s=1.0)


def test_the_suggestion_is_the_fastest_within_a_point_of_the_best():
    rows = [row("best", 0.95, 100.0), row("close_and_fast", 0.945, 400.0), row("fastest_but_worse", 0.93, 900.0),
            row("no_held_out_test", None, 2000.0)]
    assert suggest(rows).model == "close_and_fast"
    assert suggest(rows, within=0.03).model == "fastest_but_worse"
    assert suggest(rows, within=0.0).model == "best"
    # 0.99 is within a point of 1.0, whatever the floating point makes of 1.0 - 0.01.
    assert suggest([row("perfect", 1.0, 10.0), row("one_point_less", 0.99, 20.0)]).model == "one_point_less"
    assert suggest([row("single_images", None, 10.0)]) is None


def test_the_table_says_what_to_train_and_what_was_not_compared():
    comparison = Comparison(Path("garage"), ("open", "closed"), 24, 2,
                            (row("slow", 1.0, 50.0, alpha=1.0), row("quick", 1.0, 800.0, alpha=None)),
                            (Skipped("mobilenet_v1_1.0_224_quant", "not here, and not downloaded: offline"),))
    text = format_comparison(comparison)
    lines = text.splitlines()
    slow = next(line for line in lines if line.startswith("slow"))
    quick = next(line for line in lines if line.startswith("quick"))
    assert slow.split()[1:4] == ["1.0", "128", "100.0%"] and quick.split()[1] == "-"
    assert "  edge-infer teach train garage --base quick --output FILE.tflite" in lines
    assert lines[-1] == "not compared (see the notes on stderr): mobilenet_v1_1.0_224_quant"
    assert comparison.to_json_dict()["suggested"] == "quick"
    unscored = Comparison(Path("d"), ("a", "b"), 2, 2, (row("only", None, 10.0),), ())
    assert "no held-out accuracy (a class has a single image)" in format_comparison(unscored)


def test_the_default_bases_are_the_v1_grid_and_trains_default():
    manifest = build_manifest()
    entries = [find_entry(manifest, name) for name in DEFAULT_BASES]
    assert all(entry is not None and not entry.edgetpu and entry.input_type == "uint8" for entry in entries)
    grid = {(entry.alpha, entry.resolution) for entry in entries if entry.arch == "mobilenet_v1"}
    assert grid == {(a, r) for a in (0.25, 0.5, 0.75, 1.0) for r in (128, 160, 192, 224)}
    assert DEFAULT_BASES[-1] == DEFAULT_MODEL


@pytest.fixture(scope="module")
def offline(shared: Path, tmp_path_factory) -> dict[str, str]:
    """The models of ../shared as the model directory (linked, not copied) and an empty mirror: the bases that are
    not in ../shared cannot be downloaded, whether or not this machine is online."""
    folder = tmp_path_factory.mktemp("models")
    for model in (shared / "models").glob("*.tflite"):
        (folder / model.name).symlink_to(model)
    mirror = tmp_path_factory.mktemp("mirror")
    return {"EDGE_INFER_MODELS": str(folder), "EDGE_INFER_MODEL_MIRROR": str(mirror)}


def test_compare_on_the_default_bases_ranks_the_ones_here_and_skips_the_rest(shared: Path, tmp_path: Path, cli,
                                                                              offline: dict[str, str]):
    compose(shared, tmp_path / "dataset", 6, seed=1)
    done = cli("teach", "train", str(tmp_path / "dataset"), "--compare", "--json", "--seconds", "0.3",
               env=offline, json_lines=False,
               timeout=300)
    assert done.status == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {r["model"]: r for r in report["bases"]}
    assert tuple(rows) == HERE  # in the default order: the V1 grid, then train's default V2
    assert {s["base"] for s in report["skipped"]} == set(DEFAULT_BASES) - set(HERE)
    assert all(s["reason"].startswith("not here, and not downloaded") for s in report["skipped"])
    assert sum(line.startswith("edge-infer: skipped ") for line in done.stderr.splitlines()) == len(report["skipped"])
    assert report["classes"] == ["bird", "dog", "street"] and report["images"] == 18
    for r in rows.values():
        assert r["held_out_accuracy"] >= 0.8 and r["folds"] == 5, r  # three classes as different as these
        assert r["inferences_per_s"] > 0 and r["embed_s"] > 0
    small, large = rows["mobilenet_v1_0.25_128_quant"], rows["mobilenet_v1_0.75_192_quant"]
    assert (small["alpha"], small["resolution"], small["embedding"]) == (0.25, 128, 256)
    assert (large["alpha"], large["resolution"], large["embedding"]) == (0.75, 192, 768)
    # 14 M against 233 M multiply-accumulates: however busy the machine, the small one is the faster.
    assert small["inferences_per_s"] > 2 * large["inferences_per_s"]
    # The size of the model teach writes: the base without its 1001 ImageNet logits (256 x 1001 bytes of 0.47 MB).
    assert small["model_mb"] < (shared / "models" / "mobilenet_v1_0.25_128_quant.tflite").stat().st_size / 1e6 - 0.2
    best = max(r["held_out_accuracy"] for r in rows.values())
    chosen = rows[report["suggested"]]
    assert chosen["held_out_accuracy"] >= best - 0.01
    assert all(chosen["inferences_per_s"] >= r["inferences_per_s"] for r in rows.values()
               if r["held_out_accuracy"] >= best - 0.01)
    assert not list(tmp_path.rglob("*.tflite"))  # --compare writes no model


def test_compare_prints_a_table_and_skips_a_base_that_cannot_be_one(shared: Path, tmp_path: Path, cli,
                                                                    offline: dict[str, str]):
    compose(shared, tmp_path / "dataset", 3, seed=2)
    small = shared / "models" / "mobilenet_v1_0.25_128_quant.tflite"
    compiled = shared / "models" / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
    done = cli("teach", "train", str(tmp_path / "dataset"), "--compare", str(small), str(compiled),
               "--seconds", "0.3", env=offline,
               json_lines=False)
    assert done.status == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("3 classes, 9 images; 3-fold held-out accuracy")
    [measured] = [line for line in lines if line.startswith("mobilenet_v1_0.25_128_quant ")]
    assert measured.split()[1:3] == ["0.25", "128"] and float(measured.split()[-2]) > 0
    assert f"  edge-infer teach train {tmp_path / 'dataset'} --base {small} --output FILE.tflite" in lines
    assert lines[-1] == f"not compared (see the notes on stderr): {compiled}"
    [note] = [line for line in done.stderr.splitlines() if line.startswith("edge-infer: skipped")]
    assert "teach on its CPU build" in note


def test_bad_comparisons_are_refused_with_one_line(shared: Path, tmp_path: Path, cli, offline: dict[str, str]):
    compose(shared, tmp_path / "dataset", 2, seed=3)
    dataset = str(tmp_path / "dataset")
    compiled = str(shared / "models" / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    for args, messages in (
            (["--compare", "mobilenet_v1_0.3_128_quant"], ("--compare: unknown base 'mobilenet_v1_0.3_128_quant'",
                                                           "did you mean mobilenet_v1_0.")),
            (["--compare", str(tmp_path / "none.tflite")], (f"--compare: base '{tmp_path / 'none.tflite'}' does not "
                                                            "exist",)),
            (["--compare", compiled], ("none of the 1 base(s) could be used", "teach on its CPU build")),
            (["--compare", "--output", str(tmp_path / "m.tflite")], ("--compare writes no model",)),
            ([], ("--output FILE.tflite is needed (or --compare",)),
    ):
        done = cli("teach", "train", dataset, *args, env=offline, json_lines=False)
        assert done.status == 2 and len(error_lines(done.stderr)) == 1, (args, done.stderr)
        assert all(message in error_lines(done.stderr)[0] for message in messages), (args, done.stderr)
    assert not list(tmp_path.rglob("*.tflite"))


def test_a_mirrors_password_never_reaches_the_notes_or_the_report(shared: Path, tmp_path: Path, cli,
                                                                   offline: dict[str, str]):
    """A base pulled from a mirror that cannot be reached is skipped with the reason, its URL's password hidden."""
    compose(shared, tmp_path / "dataset", 3, seed=3)
    small = shared / "models" / "mobilenet_v1_0.25_128_quant.tflite"
    env = {**offline, "EDGE_INFER_MODEL_MIRROR": "https://mirror-user:s3cret-token@127.0.0.1:9/models"}
    done = cli("teach", "train", str(tmp_path / "dataset"), "--compare", str(small), "mobilenet_v1_1.0_224_quant",
               "--seconds", "0.3", "--json", env=env, json_lines=False)
    assert done.status == 0, done.stderr
    [skipped] = json.loads(done.stdout)["skipped"]
    assert skipped["base"] == "mobilenet_v1_1.0_224_quant" and "127.0.0.1" in skipped["reason"]
    assert "s3cret-token" not in done.stdout + done.stderr
