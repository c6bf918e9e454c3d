"""The model zoo: manifest, pull (against a local HTTP server serving ../shared/models), inspect."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import http.server
import io
import json
import re
import socket
import ssl
import subprocess
import tarfile
import threading
import urllib.request
from pathlib import Path

import pytest
from conftest import error_lines, need

from edge_infer.errors import ModelError
from edge_infer.models.pull import fetch_missing, progress_bar, pull, sha256_of
from edge_infer.models.zoo import DEFAULT_MODEL, ModelEntry, alpha_text, build_manifest, find_entry
from edge_infer.pipeline.classifier import ModelConfig

MANIFEST = build_manifest()


def test_the_default_model_is_as_accurate_as_the_best_cpu_model_and_can_be_verified(models: Path):
    default = find_entry(MANIFEST, DEFAULT_MODEL)
    assert default is not None and ModelConfig().path == DEFAULT_MODEL and not default.edgetpu
    quantized = [e for e in MANIFEST if e.kind == "uint8" and e.top1 is not None]  # the CPU's (no Edge TPU, no HEF)
    assert default.top1 == max(e.top1 for e in quantized)  # only the float V2 is published higher
    assert default.sha256 == sha256_of(models / default.file_name)  # a first run pulls and checks it


def test_manifest_entries_are_well_formed_and_unique():
    assert len({e.name for e in MANIFEST}) == len(MANIFEST)
    for entry in MANIFEST:
        if entry.hailo:  # Hailo's URL names the network and the chip, not our file name (tests/test_hailo.py)
            assert entry.url.startswith("https://") and f"/{entry.hailo}/mobilenet_v" in entry.url
            assert entry.name.endswith(f"_{entry.hailo}") and entry.file_name == f"{entry.name}.hef"
            continue
        if entry.imx500:  # Raspberry Pi's name for the network (tests/test_imx500.py)
            assert entry.url.endswith(f"/{entry.file_name}") and entry.file_name.endswith(".rpk") and entry.git_blob
            continue
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

    def __init__(self, directory: Path, extra: dict[str, bytes] | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.requests: list[str] = []
        self.extra = extra if extra is not None else {}  # file name -> body, served before `directory`
        self.faults: dict[str, str] = {}  # file name -> "500", "truncate" or "no length" (streamed, no Content-Length)
        self.redirects: dict[str, str] = {}  # file name -> the URL a 302 sends the client to
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append(name)
                fault = server.faults.get(name)
                if fault == "500":
                    self.send_error(500, "broken")
                    return
                if name in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[name])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.extra.get(name)
                if body is None:
                    path = directory / name
                    if not path.is_file():
                        self.send_error(404)
                        return
                    body = path.read_bytes()
                self.send_response(200)
                if fault != "no length":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if fault == "truncate" else body)
                if fault == "no length":  # HTTP/1.0: the body ends when the connection does
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/models"
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [ENTRY.file_name, f"{ENTRY.file_name}.sha256"]
    assert (tmp_path / f"{ENTRY.file_name}.sha256").read_text() == f"{ENTRY.sha256}  {ENTRY.file_name}\n"


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
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "mobilenet_v1_0.25_128_quant.tflite", "mobilenet_v1_0.25_128_quant.tflite.sha256",
        "mobilenet_v1_0.5_160_quant.tflite", "mobilenet_v1_0.5_160_quant.tflite.sha256"]
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


# Every download verified -------------------------------------------------------------------------------------------
# A .tgz entry pulled from a mirror: the mirror serves the bare .tflite, which has no published sha256 (only the
# archive has one), so what comes is checked by what it is (https or a local directory, TFLite, loadable, not huge)
# and its sha256 is recorded for every later use.
UNPINNED = find_entry(MANIFEST, "mobilenet_v1_0.25_128")
JUNK = b"Access Denied here\n"  # 19 bytes of text: what a captive portal or a broken mirror sends
# git blob ids of three Coral files in google-coral/test_data's tree (commit 104342d2d348, "Release Grouper").
CORAL_TREE = {"mobilenet_v1_0.25_128_quant.tflite": "22b67d6a63753ad9907a4c8505632479ac439b94",
              "mobilenet_v1_0.5_160_quant.tflite": "9e1cfe5f512774a651ce19aab416789463b69665",
              "tf2_mobilenet_v2_1.0_224_ptq.tflite": "adc0326f06ade4b8d2a571a72d2486a260f987d4"}


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model check's verdicts go to this test's own cache: a check that ran for another test is not skipped."""
    monkeypatch.setenv("EDGE_INFER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGE_INFER_ALLOW_INSECURE_MIRROR", raising=False)


def serving(extra: dict[str, bytes], tls: tuple[Path, Path] | None = None) -> ModelServer:
    """A server of `extra` only (file name -> body)."""
    return ModelServer(Path("/nonexistent"), extra, tls)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: the https mirror of these tests."""
    need("openssl")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def trusted(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # urllib's default context trusts it
    return certificate


def tgz(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return archive.getvalue()


def member(name: str, data: bytes = b"", **attributes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attributes.items():
        setattr(info, key, value)
    return info, data


def archive_entry(url: str) -> ModelEntry:
    """UNPINNED with its .tgz at `url` and no published hash for it."""
    return dataclasses.replace(UNPINNED, url=url, archive_sha256=None)


def nothing_left(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


def test_every_zoo_entry_has_a_hash_from_its_publisher_or_an_upstream_manifest():
    for entry in MANIFEST:
        if entry.hailo:  # Hailo publishes none for its HEFs: pulled as unpinned entries are (tests/test_hailo.py)
            assert not entry.pinned(from_archive=False) and entry.url.startswith("https://")
            continue
        pinned = [entry.sha256, entry.archive_sha256, entry.git_blob]
        assert any(pinned), entry.name
        assert entry.archive_sha256 is None or (entry.member and re.fullmatch(r"[0-9a-f]{64}", entry.archive_sha256))
        assert entry.git_blob is None or re.fullmatch(r"[0-9a-f]{40}", entry.git_blob)
        assert entry.member is None or entry.max_archive_bytes > entry.max_bytes
        assert 20 << 20 < entry.max_bytes <= 256 << 20  # the biggest zoo .tflite is 16.9 MB


def test_the_git_blob_check_agrees_with_the_publishers_tree(models: Path):
    from edge_infer.models.pull import git_blob_of

    for name, blob in CORAL_TREE.items():
        assert git_blob_of(models / name) == blob


def test_a_file_pinned_by_its_git_blob_id_is_checked_by_it(models: Path, tmp_path: Path):
    name = "mobilenet_v1_0.25_128_quant.tflite"
    by_blob = dataclasses.replace(ENTRY, sha256=None, git_blob=CORAL_TREE[name])
    server = serving({name: (models / name).read_bytes()})
    try:
        assert pull(by_blob, tmp_path / "m", server.url) is True  # pinned: an http mirror is fine
        server.extra[name] = (models / "mobilenet_v1_0.5_160_quant.tflite").read_bytes()
        with pytest.raises(ModelError, match="git blob id"):
            pull(by_blob, tmp_path / "other", server.url)
    finally:
        server.close()
    assert sha256_of(tmp_path / "m" / name) == ENTRY.sha256 and nothing_left(tmp_path / "other")


def test_junk_from_an_http_mirror_is_refused_before_anything_is_sent(tmp_path: Path):
    server = serving({UNPINNED.file_name: JUNK})
    try:
        with pytest.raises(ModelError, match=r"https.*--allow-insecure-mirror"):
            pull(UNPINNED, tmp_path / "m", server.url)
        assert server.requests == []
    finally:
        server.close()
    assert nothing_left(tmp_path / "m")


@pytest.mark.parametrize(("body", "refusal"), [
    (JUNK, "not a TFLite model"),  # an insecure mirror allowed on purpose still has to send a TFLite model
    (b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 40, "corrupt|cannot load"),  # a look-alike LiteRT cannot load
])
def test_an_insecure_mirror_allowed_on_purpose_still_has_to_send_a_model_that_loads(tmp_path: Path, body: bytes,
                                                                                     refusal: str):
    server = serving({UNPINNED.file_name: body})
    try:
        with pytest.raises(ModelError, match=refusal):
            pull(UNPINNED, tmp_path / "m", server.url, allow_insecure=True)
    finally:
        server.close()
    assert nothing_left(tmp_path / "m")


@pytest.mark.parametrize("fault", [None, "no length"])
def test_a_body_over_the_size_cap_is_refused(tmp_path: Path, fault: str | None):
    small = dataclasses.replace(UNPINNED, max_bytes=100_000)
    server = serving({UNPINNED.file_name: b"\x1c\x00\x00\x00TFL3" + bytes(300_000)})
    if fault:
        server.faults[UNPINNED.file_name] = fault
    try:
        with pytest.raises(ModelError, match="more than"):
            pull(small, tmp_path / "m", server.url, allow_insecure=True)
    finally:
        server.close()
    assert nothing_left(tmp_path / "m")


def test_a_mirror_directory_file_over_the_size_cap_is_refused(tmp_path: Path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / UNPINNED.file_name).write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(300_000))
    with pytest.raises(ModelError, match="more than"):
        pull(dataclasses.replace(UNPINNED, max_bytes=100_000), tmp_path / "m", str(mirror))
    assert nothing_left(tmp_path / "m")


def huge_member_archive() -> bytes:
    """A .tgz whose .tflite member says it holds 1 TB (and holds nothing): reading it would never end."""
    info = tarfile.TarInfo(f"./{UNPINNED.member}")
    info.size = 10**12
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    return gzip.compress(header + bytes(2048))


@pytest.mark.parametrize("archive, refusal", [
    (tgz(member("./model.ckpt.meta", b"checkpoint"), member(f"./{UNPINNED.member}", bytes(2 << 20))), "bytes"),
    (huge_member_archive(), "bytes"),
    (tgz(member(f"./{UNPINNED.member}", type=tarfile.SYMTYPE, linkname="/etc/passwd")), "link"),
    (tgz(member(f"../{UNPINNED.member}", b"\x1c\x00\x00\x00TFL3")), "outside"),
    (tgz(member("./model.ckpt.meta", b"checkpoint")), "has no"),
], ids=["member over the cap", "member of 1 TB", "symlink", "path traversal", "no member"])
def test_a_bad_archive_is_refused(tmp_path: Path, archive: bytes, refusal: str):
    server = serving({"model.tgz": archive})
    entry = dataclasses.replace(archive_entry(f"{server.url}/model.tgz"), max_bytes=1 << 20)
    try:
        with pytest.raises(ModelError, match=refusal):
            pull(entry, tmp_path / "m", allow_insecure=True)
    finally:
        server.close()
    assert nothing_left(tmp_path / "m")


def test_an_archive_with_the_wrong_sha256_is_refused_before_it_is_opened(models: Path, tmp_path: Path):
    payload = (models / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()
    archive = tgz(member(f"./{UNPINNED.member}", payload))
    server = serving({"model.tgz": archive})
    try:
        wrong = dataclasses.replace(UNPINNED, url=f"{server.url}/model.tgz", archive_sha256="0" * 64)
        with pytest.raises(ModelError, match="sha256"):
            pull(wrong, tmp_path / "m")
        right = dataclasses.replace(wrong, archive_sha256=hashlib.sha256(archive).hexdigest())
        assert pull(right, tmp_path / "m") is True  # pinned: an http source is fine, the hash vouches for it
    finally:
        server.close()
    assert (tmp_path / "m" / UNPINNED.file_name).read_bytes() == payload


def test_the_redirect_handler_refuses_a_downgrade_from_https():
    from edge_infer.models.pull import redirect_handler

    handler = redirect_handler()()
    headers = http.client.HTTPMessage()
    for start, to in (("https://example.org/m.tflite", "http://example.org/m.tflite"),
                      ("https://example.org/m.tflite", "ftp://example.org/m.tflite"),
                      ("http://example.org/m.tflite", "file:///etc/passwd")):
        with pytest.raises(ModelError, match="redirect"):
            handler.redirect_request(urllib.request.Request(start), io.BytesIO(), 302, "Found", headers, to)
    for start, to in (("https://example.org/m.tflite", "https://cdn.example.org/m.tflite"),
                      ("http://example.org/m.tflite", "https://example.org/m.tflite")):
        assert handler.redirect_request(urllib.request.Request(start), io.BytesIO(), 302, "Found", headers,
                                        to).full_url == to


def test_an_https_mirror_redirecting_to_http_is_refused(models: Path, tmp_path: Path, trusted):
    payload = (models / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()
    plain = serving({UNPINNED.file_name: payload})
    secure = serving({}, trusted)
    secure.redirects[UNPINNED.file_name] = f"{plain.url}/{UNPINNED.file_name}"
    try:
        with pytest.raises(ModelError, match="redirect"):
            pull(UNPINNED, tmp_path / "m", secure.url)
        assert secure.requests == [UNPINNED.file_name] and plain.requests == []
    finally:
        plain.close()
        secure.close()
    assert nothing_left(tmp_path / "m")


def test_an_unpinned_model_from_an_https_mirror_is_checked_and_its_sha256_recorded(models: Path, tmp_path: Path,
                                                                                   trusted):
    payload = (models / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()
    secure = serving({UNPINNED.file_name: payload}, trusted)
    out = tmp_path / "m"
    try:
        assert pull(UNPINNED, out, secure.url) is True
        secure.requests.clear()
        assert pull(UNPINNED, out, secure.url) is False and secure.requests == []
    finally:
        secure.close()
    assert (out / UNPINNED.file_name).read_bytes() == payload
    record = out / f"{UNPINNED.file_name}.sha256"
    assert record.read_text() == f"{hashlib.sha256(payload).hexdigest()}  {UNPINNED.file_name}\n"
    assert sorted(p.name for p in out.iterdir()) == [UNPINNED.file_name, record.name]
    assert len(list((tmp_path / "cache" / "checked").iterdir())) == 1  # the project's model check ran on it


def test_a_file_changed_after_its_download_fails_the_next_pull_and_run(cli, models: Path, tmp_path: Path):
    mirror = tmp_path / "mirror"  # a local directory the user configured: their own files, no flag needed
    mirror.mkdir()
    (mirror / UNPINNED.file_name).write_bytes((models / "mobilenet_v1_0.25_128_quant.tflite").read_bytes())
    out = tmp_path / "m"
    assert pull(UNPINNED, out, str(mirror)) is True
    with (out / UNPINNED.file_name).open("ab") as f:
        f.write(b"\0")
    for again in (lambda: pull(UNPINNED, out, str(mirror)), lambda: fetch_missing(UNPINNED.name, str(out), None)):
        with pytest.raises(ModelError, match="changed since it was downloaded") as caught:
            again()
        assert "\n" not in str(caught.value) and f"{UNPINNED.file_name}.sha256" in str(caught.value)
    done = cli("models", "pull", UNPINNED.name, "--models-dir", str(out), env={"EDGE_INFER_MODEL_MIRROR": str(mirror)})
    assert done.status == 3
    [line] = error_lines(done.stderr)
    assert "changed since it was downloaded" in line and f"edge-infer models pull {UNPINNED.name}" in line


def test_a_mirror_that_is_neither_a_directory_nor_a_url_is_reported(tmp_path: Path):
    with pytest.raises(ModelError, match="neither a directory nor"):
        pull(UNPINNED, tmp_path / "m", str(tmp_path / "no such mirror"))


def test_cli_pull_refuses_an_http_mirror_for_an_unpinned_model_unless_told(cli, tmp_path: Path):
    server = serving({UNPINNED.file_name: JUNK})
    out = tmp_path / "m"
    try:
        refused = cli("models", "pull", UNPINNED.name, "--models-dir", str(out),
                      env={"EDGE_INFER_MODEL_MIRROR": server.url})
        allowed = cli("models", "pull", UNPINNED.name, "--models-dir", str(out), "--allow-insecure-mirror",
                      env={"EDGE_INFER_MODEL_MIRROR": server.url})
    finally:
        server.close()
    assert refused.status == 3 and allowed.status == 3
    [line] = error_lines(refused.stderr)
    assert "--allow-insecure-mirror" in line and "EDGE_INFER_ALLOW_INSECURE_MIRROR" in line
    [line] = error_lines(allowed.stderr)
    assert "not a TFLite model" in line
    assert nothing_left(out)


def test_a_first_run_from_an_http_mirror_needs_the_environment_for_an_unpinned_model(cli, models: Path,
                                                                                     tmp_path: Path, images: Path):
    payload = (models / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()
    server = serving({UNPINNED.file_name: payload})
    env = {"EDGE_INFER_MODELS": str(tmp_path / "models"), "EDGE_INFER_MODEL_MIRROR": server.url,
           "HOME": str(tmp_path), "EDGE_INFER_CACHE": str(tmp_path / "cache")}
    run = ("run", "--model", UNPINNED.name, "--source", str(images / "parrot.jpg"))
    try:
        refused = cli(*run, env=env)
        allowed = cli(*run, env={**env, "EDGE_INFER_ALLOW_INSECURE_MIRROR": "1"})
    finally:
        server.close()
    assert refused.status == 3
    [line] = error_lines(refused.stderr)
    assert "EDGE_INFER_ALLOW_INSECURE_MIRROR" in line
    assert allowed.status == 0, allowed.stderr
    assert allowed.results[0]["top"][0]["label"] == "macaw"
    assert (tmp_path / "models" / f"{UNPINNED.file_name}.sha256").is_file()
