"""Download models from the zoo: verified, extracted, and written atomically into a models directory."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ..errors import ModelError
from .files import pull_dir, replacing, resolve_model
from .zoo import ModelEntry, build_manifest, find_entry

log = logging.getLogger(__name__)

CHUNK = 1 << 16
Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def is_valid(path: Path, entry: ModelEntry) -> bool:
    return path.is_file() and entry.published(sha256_of(path)) is not False


def download(url: str, out: BinaryIO, progress: Progress | None) -> None:
    """Stream `url` into `out`; a connection that ends before Content-Length is an error."""
    # The network's modules (ssl among them, 8 MB of RSS) when something is downloaded, not in every run.
    import http.client
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers["Content-Length"]) if response.headers.get("Content-Length") else None
            received = 0
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
                if progress:
                    progress(received, total)
    except urllib.error.HTTPError as exc:
        raise ModelError(f"{url}: the server answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelError(f"cannot download {url}: {reason} (offline? set EDGE_INFER_MODEL_MIRROR to a directory "
                         "or URL that has the file)") from exc
    except http.client.IncompleteRead as exc:
        raise ModelError(f"{url}: the download was cut off after {len(exc.partial)} bytes") from exc
    if total is not None and received != total:
        raise ModelError(f"{url}: the download was cut off at {received} of {total} bytes")


def pull(entry: ModelEntry, models_dir: Path, mirror: str | None = None, progress: Progress | None = None) -> bool:
    """Put entry's .tflite into models_dir; False when a valid copy was already there.

    A mirror (a directory or a base URL) holds the .tflite files by name and replaces the internet
    source. The file appears under its final name only once complete and verified: a crash or a
    bad checksum leaves nothing there.
    """
    target = models_dir / entry.file_name
    if is_valid(target, entry):
        return False
    models_dir.mkdir(parents=True, exist_ok=True)
    archive = entry.member is not None and not mirror
    source = f"{mirror.rstrip('/')}/{entry.file_name}" if mirror else entry.url
    with replacing(target) as temp:
        with temp.open("wb") as out:
            if mirror and Path(mirror).is_dir():
                try:
                    with (Path(mirror) / entry.file_name).open("rb") as f:
                        shutil.copyfileobj(f, out, CHUNK)
                except OSError as exc:
                    raise ModelError(f"no {entry.file_name} in mirror {mirror}: {exc.strerror}") from exc
            else:
                download(source, out, progress)
        if archive:
            extract_member(temp, entry)
        if entry.published(sha256_of(temp)) is False:
            raise ModelError(f"{entry.file_name} from {source} has the wrong sha256 (expected {entry.sha256}); "
                             "deleted it")
    return True


def extract_member(path: Path, entry: ModelEntry) -> None:
    """Replace the downloaded .tgz at `path` by the .tflite inside it."""
    try:
        with tarfile.open(path) as archive:
            member = next((m for m in archive.getmembers() if Path(m.name).name == entry.member), None)
            if member is None:
                raise ModelError(f"{entry.url} has no {entry.member}")
            extracted = archive.extractfile(member)
            assert extracted is not None
            data = extracted.read()
    except tarfile.TarError as exc:
        raise ModelError(f"{entry.url} is not a readable .tgz archive: {exc}") from exc
    path.write_bytes(data)


def progress_bar(name: str, stream: TextIO = sys.stderr) -> Progress:
    """A progress bar (tqdm) while a download runs on a terminal; on a pipe or in the journal, none."""
    bar: Any = None

    def show(received: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm  # when a download starts: a run that downloads nothing does not carry it

            bar = tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024, file=stream,
                       disable=not stream.isatty(), leave=True)
        bar.update(received - bar.n)
        if total is not None and received >= total:
            bar.close()

    return show


def fetch_missing(name: str, models_dir: str | None, mirror: str | None) -> None:
    """A model named like a zoo model and not in the model directories is pulled (verified) into the
    directory `models pull` uses, so a first `edge-infer run` just works; paths are never fetched."""
    try:
        resolve_model(name, models_dir)
        return
    except ModelError:
        entry = find_entry(build_manifest(), name)
        if entry is None or os.sep in name:
            raise
    directory = pull_dir(models_dir)
    log.info("model %s is not in the model directories: downloading it into %s", entry.name, directory)
    try:
        pull(entry, directory, mirror, progress_bar(entry.name))
    except (ModelError, OSError) as exc:
        raise ModelError(f"model {entry.name} is not here and could not be downloaded "
                         f"({' '.join(str(exc).split())}): run 'edge-infer models pull {entry.name}' where there "
                         f"is internet, or copy {entry.file_name} into {directory}") from exc
