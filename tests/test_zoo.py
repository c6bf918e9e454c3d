"""The model zoo: manifest, pull (against a local HTTP server serving ../shared/models), inspect."""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import re
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from edge_infer.errors import ModelError
from edge_infer.models.pull import progress_bar, pull, sha256_of
from edge_infer.models.zoo import DEFAULT_MODEL, alpha_text, build_manifest, find_entry
from edge_infer.pipeline.classifier import ModelConfig

MANIFEST = build_manifest()


def test_the_default_model_is_as_accurate_as_the_best_cpu_model_and_can_be_verified(models: Path):
    default = find_entry(MANIFEST, DEFAULT_MODEL)
    assert default is not None and ModelConfig().path == DEFAULT_MODEL and not default.edgetpu
    quantized = [e for e in MANIFEST if e.input_type == "uint8" and not e.edgetpu and e.top1 is not None]
    assert default.top1 == max(e.top1 for e in quantized)  # only the float V2 is published higher
    assert default.sha256 == sha256_of(models / default.file_name)  # a first run pulls and checks it


def test_manifest_entries_are_well_formed_and_unique():
    assert len({e.name for e in MANIFEST}) == len(MANIFEST)
    for entry in MANIFEST:
        assert entry.url.startswith("https://") and entry.name in entry.url
        assert entry.member is None or (entry.url.endswith(".tgz") and entry.member == entry.file_name)
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.alpha in (0.25, 0.5, 0.75, 1.0) and entry.resolution in (128, 160, 192, 224)
        assert f"_{alpha_text(entry.alpha)}_{entry.resolution}" in entry.name
        assert entry.top1 is None or 30 < entry.top1 < 80
        assert entry.macs_m > 0 and entry.params_m > 0
        assert entry.edgetpu == entry.name.endswith("_edgetpu")


def test_manifest_has_the_whole_v1_grid_quantized_and_float():
    for alpha in ("0.25", "0.5", "0.75", "1.0"):
        for resolution in (128, 160, 192, 224):
            assert find_entry(MANIFEST, f"mobilenet_v1_{alpha}_{resolution}_quant")
            assert find_entry(MANIFEST, f"mobilenet_v1_{alpha}_{resolution}")


def test_published_cost_follows_the_width_and_resolution_multipliers():
    # cost ~ alpha^2 * rho^2: a sanity check that no row of the table was mistyped.
    base = find_entry(MANIFEST, "mobilenet_v1_1.0_224_quant")
    for entry in MANIFEST:
        if entry.arch == "mobilenet_v1":
            predicted = base.macs_m * entry.alpha ** 2 * (entry.resolution / 224) ** 2
            assert 0.6 < entry.macs_m / predicted < 1.45, entry.name


def test_manifest_checksums_match_the_shared_models(models: Path):
    sums = dict(reversed(line.split()) for line in (models / "SHA256SUMS").read_text().splitlines())
    checked = 0
    for entry in MANIFEST:
        if entry.file_name in sums and entry.sha256:
            assert entry.sha256 == sums[entry.file_name], entry.name
            checked += 1
    assert checked >= 7


class ModelServer:
    """Serves ../shared/models (and test archives) on 127.0.0.1, with scripted faults."""

    def __init__(self, directory: Path, extra: dict[str, bytes] | None = None) -> None:
        self.requests: list[str] = []
        self.faults: dict[str, str] = {}  # file name -> "500" or "truncate"
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append(name)
                fault = server.faults.get(name)
                if fault == "500":
                    self.send_error(500, "broken")
                    return
                body = (extra or {}).get(name)
                if body is None:
                    path = directory / name
                    if not path.is_file():
                        self.send_error(404)
                        return
                    body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if fault == "truncate" else body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def server(models: Path):
    serving = ModelServer(models)
    yield serving
    serving.close()


ENTRY = find_entry(MANIFEST, "mobilenet_v1_0.25_128_quant")


def test_pull_downloads_and_verifies(server, tmp_path: Path, models: Path):
    assert pull(ENTRY, tmp_path, server.url) is True
    assert sha256_of(tmp_path / ENTRY.file_name) == ENTRY.sha256
    assert [p.name for p in tmp_path.iterdir()] == [ENTRY.file_name]


def test_pull_is_a_no_op_when_the_file_is_there(server, tmp_path: Path):
    pull(ENTRY, tmp_path, server.url)
    server.requests.clear()
    assert pull(ENTRY, tmp_path, server.url) is False
    assert server.requests == []


def test_pull_replaces_a_damaged_file(server, tmp_path: Path):
    (tmp_path / ENTRY.file_name).write_bytes(b"half a model")
    assert pull(ENTRY, tmp_path, server.url) is True
    assert sha256_of(tmp_path / ENTRY.file_name) == ENTRY.sha256


def test_a_wrong_checksum_leaves_nothing(server, tmp_path: Path):
    wrong = dataclasses.replace(ENTRY, sha256="0" * 64)
    with pytest.raises(ModelError, match="wrong sha256"):
        pull(wrong, tmp_path, server.url)
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_download_leaves_nothing(server, tmp_path: Path):
    server.faults[ENTRY.file_name] = "truncate"
    with pytest.raises(ModelError, match="cut off"):
        pull(ENTRY, tmp_path, server.url)
    assert list(tmp_path.iterdir()) == []


def test_a_server_error_is_reported(server, tmp_path: Path):
    server.faults[ENTRY.file_name] = "500"
    with pytest.raises(ModelError, match="answered 500"):
        pull(ENTRY, tmp_path, server.url)
    assert list(tmp_path.iterdir()) == []


def test_pull_extracts_the_tflite_from_a_tgz(models: Path, tmp_path: Path):
    payload = (models / "mobilenet_v1_0.5_160_quant.tflite").read_bytes()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, data in (("./mobilenet_v1_0.5_160_quant.ckpt.meta", b"checkpoint"),
                           ("./mobilenet_v1_0.5_160_quant.tflite", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    serving = ModelServer(tmp_path, {"mobilenet_v1_0.5_160_quant.tgz": archive.getvalue()})
    try:
        entry = dataclasses.replace(find_entry(MANIFEST, "mobilenet_v1_0.5_160_quant"),
                                    url=f"{serving.url}/mobilenet_v1_0.5_160_quant.tgz",
                                    member="mobilenet_v1_0.5_160_quant.tflite")
        out = tmp_path / "out"
        assert pull(entry, out) is True
        assert (out / "mobilenet_v1_0.5_160_quant.tflite").read_bytes() == payload
    finally:
        serving.close()


def test_pull_from_a_mirror_directory(models: Path, tmp_path: Path):
    assert pull(ENTRY, tmp_path, str(models)) is True
    assert sha256_of(tmp_path / ENTRY.file_name) == ENTRY.sha256


def test_cli_pull_with_the_mirror_environment(cli, models: Path, tmp_path: Path):
    done = cli("models", "pull", "mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.5_160_quant", "--models-dir",
               str(tmp_path / "m"), env={"EDGE_INFER_MODEL_MIRROR": str(models)})
    assert done.status == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["mobilenet_v1_0.25_128_quant.tflite",
                                                                 "mobilenet_v1_0.5_160_quant.tflite"]
    again = cli("models", "pull", "mobilenet_v1_0.25_128_quant", "--models-dir", str(tmp_path / "m"),
                env={"EDGE_INFER_MODEL_MIRROR": str(models)})
    assert "already there" in again.stderr


def test_cli_unknown_model_lists_close_matches(cli):
    done = cli("models", "pull", "mobilenet_v1_0.25_128_qaunt")
    assert done.status == 3
    assert "unknown model 'mobilenet_v1_0.25_128_qaunt'; did you mean mobilenet_v1_0.25_128_quant" in done.stderr


# Published million MACs / parameters, given to the table's precision (MACs in whole millions).
PUBLISHED = {"mobilenet_v1_0.25_128_quant": (14, 0.47), "mobilenet_v1_0.5_160_quant": (77, 1.34),
             "mobilenet_v1_0.75_192_quant": (233, 2.59), "mobilenet_v2_1.0_224_quant": (300, 3.47)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_inspect_counts_macs_and_parameters_like_the_published_tables(cli, models: Path, name: str):
    done = cli("models", "inspect", str(models / f"{name}.tflite"), "--json", json_lines=False)
    assert done.status == 0, done.stderr
    info = json.loads(done.stdout)
    macs, params = PUBLISHED[name]
    # Within 3%, or equal at the table's own precision (13.57 M is the published "14").
    assert abs(info["macs_m"] - macs) / macs <= 0.03 or round(info["macs_m"]) == macs
    assert abs(info["params_m"] - params) / params <= 0.03
    assert info["inputs"][0]["shape"][3] == 3 and info["outputs"][0]["shape"][1] == 1001
    assert info["labels"] == "model metadata (1001 labels)" and not info["needs_edgetpu"]
    assert info["ops"]["DEPTHWISE_CONV_2D"] >= 13


def test_inspect_an_edgetpu_model(cli, models: Path):
    done = cli("models", "inspect", str(models / "mobilenet_v1_0.75_192_quant_edgetpu.tflite"), json_lines=False)
    assert done.status == 0
    assert "Edge TPU: required" in done.stdout and "edgetpu-custom-op x1" in done.stdout


def test_a_first_run_pulls_a_missing_zoo_model(server, cli, tmp_path: Path, images: Path):
    models_dir = tmp_path / "models"
    env = {"EDGE_INFER_MODELS": str(models_dir), "EDGE_INFER_MODEL_MIRROR": server.url, "HOME": str(tmp_path)}
    done = cli("run", "--model", "mobilenet_v1_0.25_128_quant", "--source", str(images / "parrot.jpg"), env=env)
    assert done.status == 0, done.stderr
    assert done.results[0]["top"][0]["label"] == "macaw"
    assert f"model mobilenet_v1_0.25_128_quant is not in the model directories: downloading it into {models_dir}" \
        in done.stderr
    assert sha256_of(models_dir / ENTRY.file_name) == ENTRY.sha256
    server.requests.clear()
    assert cli("run", "--model", "mobilenet_v1_0.25_128_quant", "--source", str(images / "parrot.jpg"),
               env=env).status == 0
    assert server.requests == []  # there now: no second download


def test_a_first_run_offline_says_which_command_to_run(cli, tmp_path: Path, images: Path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on: offline
    env = {"EDGE_INFER_MODELS": str(tmp_path / "models"), "HOME": str(tmp_path),
           "EDGE_INFER_MODEL_MIRROR": f"http://127.0.0.1:{closed.getsockname()[1]}/models"}
    done = cli("run", "--model", "mobilenet_v1_0.25_128_quant", "--source", str(images / "parrot.jpg"), env=env)
    closed.close()
    assert done.status == 3
    [line] = [line for line in done.stderr.splitlines() if line.startswith("edge-infer: error:")]
    assert "is not here and could not be downloaded" in line
    assert "run 'edge-infer models pull mobilenet_v1_0.25_128_quant' where there is internet" in line


def test_the_progress_bar_shows_on_a_terminal_only():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, piped = Terminal(), io.StringIO()
    for stream in (shown, piped):
        show = progress_bar("mobilenet_v1_0.25_128_quant", stream)
        for received in (100_000, 300_000, 525_598):
            show(received, 525_598)
    assert "mobilenet_v1_0.25_128_quant" in shown.getvalue() and "100%" in shown.getvalue()
    assert piped.getvalue() == ""
