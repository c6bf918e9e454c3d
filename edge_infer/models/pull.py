"""Download models from the zoo: verified, extracted, and written atomically into a models directory.

Every download is checked against what its publisher states (zoo.py: the .tflite's sha256 or git blob id,
or the .tgz's sha256). A download with nothing to be checked against (a mirror's bare .tflite for an
entry whose publisher hashes only the archive) must come over https or from a local directory (http and
other URLs only when the user says so: --allow-insecure-mirror, EDGE_INFER_ALLOW_INSECURE_MIRROR=1), and
must be a TFLite model that passes the project's model check. Always: a size cap, tar members streamed
under a cap (no links, nothing outside the archive), no redirect from https to anything else, and the
file under its final name only once it passed. The sha256 of what was downloaded is recorded beside
it (<name>.tflite.sha256, sha256sum's format) and checked on every later pull and `run`.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import re
import sys
import tarfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TextIO
from urllib.parse import urlsplit

from ..errors import ModelError
from .files import HEF_MAGIC, is_tflite, model_stem, pull_dir, replacing, resolve_model
from .zoo import ModelEntry, build_manifest, find_entry

log = logging.getLogger(__name__)

CHUNK = 1 << 16
Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)
MIRROR_ENV = "EDGE_INFER_MODEL_MIRROR"  # a directory or URL models are pulled from instead of their publishers'
INSECURE_ENV = "EDGE_INFER_ALLOW_INSECURE_MIRROR"
RECORD_SUFFIX = ".sha256"
# An archive is read header by header up to the member: at most this many members and this many bytes
# before it (the zoo's .tgz files hold about 8 members, 100 MB unpacked).
MAX_MEMBERS = 1000
MAX_UNPACKED_BYTES = 1 << 30


class UnsafeDownload(ModelError):
    """A download refused for what it is or where it comes from (not for being offline)."""


def hash_file(path: Path, digest: Any) -> str:
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return hash_file(path, hashlib.sha256())


def git_blob_of(path: Path) -> str:
    """The git object id of the file's content: what a repository's tree names it by."""
    return hash_file(path, hashlib.sha1(f"blob {path.stat().st_size}\0".encode()))


def insecure_allowed(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(INSECURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# The record of what was downloaded --------------------------------------------------------------------------------


def record_path(model: Path) -> Path:
    return model.with_name(model.name + RECORD_SUFFIX)


def write_record(model: Path, digest: str) -> None:
    record = record_path(model)
    with replacing(record) as temp:
        temp.write_text(f"{digest}  {model.name}\n")


def recorded(model: Path) -> str | None:
    """The sha256 recorded when `model` was downloaded; None when there is no record."""
    try:
        text = record_path(model).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelError(f"cannot read {record_path(model)}: {exc.strerror}") from exc
    fields = text.split()
    return fields[0].lower() if fields else ""  # "" (or any non-sha256) matches no file


def check_recorded(model: Path, digest: str | None = None) -> None:
    """Raise when `model` is not the file whose sha256 was recorded when it was downloaded."""
    expected = recorded(model)
    if expected is None:
        return
    digest = digest or sha256_of(model)
    if digest != expected:
        name = model_stem(model.name)
        was = f"the {expected[:12]}..." if re.fullmatch(r"[0-9a-f]{64}", expected) else "the (damaged) sha256"
        raise ModelError(f"'{model}' changed since it was downloaded (sha256 {digest[:12]}..., not {was} recorded "
                         f"in {record_path(model).name}): if you replaced it on purpose, delete "
                         f"{record_path(model).name}; otherwise delete both and run 'edge-infer models pull {name}'")


def present(target: Path, entry: ModelEntry) -> bool:
    """Whether a good copy of entry's file is already at `target`.

    A file that is not the publisher's (a hash it publishes differs) is downloaded again; a file with no
    published hash is checked against the sha256 recorded when it was downloaded, and one that changed
    since is an error: who changed it, and why, is for the user to say.
    """
    if not target.is_file():
        return False
    if entry.sha256:
        return entry.published(sha256_of(target)) is True
    if entry.git_blob:
        return git_blob_of(target) == entry.git_blob
    check_recorded(target)
    return True


# Fetching --------------------------------------------------------------------------------------------------------


@functools.cache
def redirect_handler() -> Any:
    """The urllib redirect handler downloads use (a class; urllib.request is imported when something is
    downloaded, not in every run)."""
    import urllib.request

    class RefuseDowngrade(urllib.request.HTTPRedirectHandler):
        """Follows redirects from https to https only, and from http to http(s): never to another scheme, and
        never from https down to http, where anyone on the path could change the file."""

        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
            start, to = urlsplit(req.full_url).scheme, urlsplit(newurl).scheme
            if to not in ("http", "https") or (start == "https" and to != "https"):
                fp.close()
                raise UnsafeDownload(f"{req.full_url} redirected to {newurl}: refused (a download that starts on "
                                     "https stays on https); use a source that serves the file over https")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return RefuseDowngrade


def too_big(source: str, size: int, cap: int, exact: bool = True) -> UnsafeDownload:
    return UnsafeDownload(f"{source} is {size:,}{'' if exact else '+'} bytes, more than the {cap:,} allowed here (the "
                          "biggest zoo model is 17 MB, its archive 94 MB): refused; is this the right file?")


def download(url: str, out: BinaryIO, progress: Progress | None, cap: int) -> str:
    """Stream `url` into `out`, at most `cap` bytes; the sha256 of what came. A connection that ends before
    Content-Length is an error."""
    # The network's modules (ssl among them, 8 MB of RSS) when something is downloaded, not in every run.
    import http.client
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(redirect_handler())
    try:
        with opener.open(url, timeout=30) as response:
            total = int(response.headers["Content-Length"]) if response.headers.get("Content-Length") else None
            if total is not None and total > cap:
                raise too_big(url, total, cap)
            digest, received = copy_capped(response, out, cap, url, progress, total)
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
    return digest


def copy_capped(source: BinaryIO, out: BinaryIO, cap: int, what: str, progress: Progress | None = None,
                total: int | None = None) -> tuple[str, int]:
    """Copy `source` into `out`, refusing more than `cap` bytes whatever a header said; (sha256, bytes)."""
    digest = hashlib.sha256()
    copied = 0
    while block := source.read(CHUNK):
        copied += len(block)
        if copied > cap:
            raise too_big(what, copied, cap, exact=False)
        out.write(block)
        digest.update(block)
        if progress:
            progress(copied, total)
    return digest.hexdigest(), copied


def copy_local(path: Path, out: BinaryIO, cap: int) -> str:
    """Copy a file from a mirror directory, at most `cap` bytes; its sha256."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise ModelError(f"no {path.name} in mirror {path.parent}: {exc.strerror}") from exc
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > cap:
            raise too_big(str(path), size, cap)
        return copy_capped(f, out, cap, str(path))[0]


def extract_member(archive_path: Path, entry: ModelEntry, source: str, out: BinaryIO) -> str:
    """Stream entry's .tflite out of the .tgz at `archive_path` into `out`; its sha256.

    Headers are read one at a time up to the member, and only the member's bytes are read: never a whole
    member in memory, nothing written but the one member. Refused: a member named outside the archive
    (absolute, or with ..), a member that is a link or not a regular file, sizes over the caps."""
    assert entry.member is not None
    try:
        with tarfile.open(archive_path, "r:*") as archive:
            walked = 0
            for count, member in enumerate(iter(archive.next, None), start=1):
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise UnsafeDownload(f"{source} has a member named outside the archive ({member.name!r}): "
                                         "refused; this is not the published archive")
                if path.name == entry.member:
                    if not member.isreg():
                        raise UnsafeDownload(f"{source}: {member.name} is a link or not a regular file: refused; "
                                             "this is not the published archive")
                    if member.size > entry.max_bytes:
                        raise too_big(f"{source}: {member.name}", member.size, entry.max_bytes)
                    return stream_member(archive, member, out, entry.max_bytes, source)
                walked += member.size  # skipping a member of a .tgz decompresses it
                if count >= MAX_MEMBERS or walked > MAX_UNPACKED_BYTES:
                    raise UnsafeDownload(f"{source} has more than {MAX_MEMBERS} members or {MAX_UNPACKED_BYTES:,} "
                                         "bytes before the model: refused; this is not the published archive")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UnsafeDownload(f"{source} is not a readable .tgz archive ({exc}): refused") from exc
    raise UnsafeDownload(f"{source} has no {entry.member}")


def stream_member(archive: tarfile.TarFile, member: tarfile.TarInfo, out: BinaryIO, cap: int, source: str) -> str:
    extracted = archive.extractfile(member)
    assert extracted is not None  # a regular file
    with extracted:
        return copy_capped(extracted, out, cap, f"{source}: {member.name}")[0]


# Where from, and checking what came ------------------------------------------------------------------------------


def check_source(entry: ModelEntry, source: str, local: bool, from_archive: bool, allow_insecure: bool) -> None:
    """Refuse, before anything is sent, a source that could hand over any file for an entry that has no
    publisher's hash to check the download against."""
    if local or entry.pinned(from_archive) or allow_insecure:
        return
    scheme = urlsplit(source).scheme
    if scheme != "https":
        raise UnsafeDownload(f"{entry.name} has no published hash to check a download from {source} against, and "
                             f"{scheme}:// can be changed on the way: use an https mirror or a local directory, or, "
                             f"if you trust this network, pass --allow-insecure-mirror (or set {INSECURE_ENV}=1)")


def model_check(path: Path, source: str) -> None:
    """The project's check of a model from a source nobody vouches for: the interpreter loads it (in a child
    process first, as every model's first use), and it allocates its tensors."""
    from ..errors import RuntimeUnavailableError
    from .check import check_model
    from .files import read_model
    from .runtime import load_runtime, open_interpreter

    def said(exc: Exception) -> str:  # its words, without the temporary file's name
        text = str(exc).replace(f"model file '{path}'", "the file").replace(f"'{path}'", "the file")
        return " ".join(text.replace(str(path), "the file").split())

    model = read_model(path)
    try:
        runtime = load_runtime()
    except RuntimeUnavailableError:  # nothing here could load it: its first use, where a runtime is, checks it
        log.warning("no TFLite interpreter here: %s is checked when it is first used", source)
        return
    try:
        check_model(model, runtime.name)
        if model.needs_edgetpu:  # one custom op only the Coral runs
            return
        open_interpreter(runtime, model, num_threads=1).allocate_tensors()
    except (ModelError, RuntimeError, ValueError) as exc:
        raise UnsafeDownload(f"{source}: the interpreter cannot load it ({said(exc)}): refused; is this the right "
                             "file?") from exc


def verify(temp: Path, entry: ModelEntry, source: str, digest: str, from_archive: bool) -> None:
    """Raise unless the file at `temp` is entry's published file or, with nothing published to compare, a model."""
    if entry.sha256:
        if entry.published(digest) is False:
            raise UnsafeDownload(f"{entry.file_name} from {source} has the wrong sha256 (expected {entry.sha256}); "
                                 "deleted it")
        return
    if entry.git_blob:
        if git_blob_of(temp) != entry.git_blob:
            raise UnsafeDownload(f"{entry.file_name} from {source} is not the publisher's file (its git blob id is "
                                 f"not {entry.git_blob}); deleted it")
        return
    with temp.open("rb") as f:
        header = f.read(8)
    if entry.hailo:  # a HEF: HailoRT parses it on the Hailo only; here it must at least begin as one
        if header[:4] != HEF_MAGIC:
            raise UnsafeDownload(f"{source} sent {temp.stat().st_size:,} bytes that are not a Hailo HEF (an error "
                                 "page, or the wrong file?); deleted it")
        return
    if not is_tflite(header):
        raise UnsafeDownload(f"{source} sent {temp.stat().st_size:,} bytes that are not a TFLite model (an error "
                             "page, or the wrong file?); deleted it")
    if not entry.pinned(from_archive):  # a .tgz whose sha256 matched holds the publisher's .tflite
        model_check(temp, source)


def pull(entry: ModelEntry, models_dir: Path, mirror: str | None = None, progress: Progress | None = None, *,
         allow_insecure: bool = False) -> bool:
    """Put entry's .tflite (a Hailo entry's .hef) into models_dir; False when a valid copy was already there.

    A mirror (a directory or a base URL) holds the .tflite files by name and replaces the internet
    source. The file appears under its final name only once complete and verified: a crash or a
    refused download leaves nothing there.
    """
    target = models_dir / entry.file_name
    if present(target, entry):
        return False
    from_archive = entry.member is not None and not mirror
    local = bool(mirror and Path(mirror).expanduser().is_dir())
    if mirror and not local and "://" not in mirror:
        raise ModelError(f"model mirror '{mirror}' is neither a directory nor a URL (https://...)")
    source = f"{mirror.rstrip('/')}/{entry.file_name}" if mirror else entry.url
    check_source(entry, source, local, from_archive, allow_insecure)
    models_dir.mkdir(parents=True, exist_ok=True)
    with replacing(target) as temp:
        with temp.open("wb") as out:
            if local:
                assert mirror is not None
                digest = copy_local(Path(mirror).expanduser() / entry.file_name, out, entry.max_bytes)
            elif not from_archive:
                digest = download(source, out, progress, entry.max_bytes)
            else:
                archive = temp.with_name(temp.name + ".tgz")
                try:
                    with archive.open("wb") as packed:
                        archive_digest = download(source, packed, progress, entry.max_archive_bytes)
                    if entry.archive_sha256 and archive_digest != entry.archive_sha256:
                        raise UnsafeDownload(f"{source} has the wrong sha256 (expected {entry.archive_sha256}); "
                                             "deleted it")
                    digest = extract_member(archive, entry, source, out)
                finally:
                    archive.unlink(missing_ok=True)
        verify(temp, entry, source, digest, from_archive)
        write_record(target, digest)  # before the model takes its name: a crash between leaves no unrecorded file
    return True


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
    directory `models pull` uses, so a first `edge-infer run` just works; paths are never fetched.
    A model that is there and was downloaded by edge-infer must still be the file it downloaded.
    $EDGE_INFER_ALLOW_INSECURE_MIRROR=1 is --allow-insecure-mirror for these downloads."""
    entry = None
    try:
        found = resolve_model(name, models_dir)
    except ModelError:
        entry = find_entry(build_manifest(), name)
        if entry is None or os.sep in name:
            raise
    if entry is None:
        check_recorded(found)
        return
    directory = pull_dir(models_dir)
    log.info("model %s is not in the model directories: downloading it into %s", entry.name, directory)
    try:
        pull(entry, directory, mirror, progress_bar(entry.name), allow_insecure=insecure_allowed())
    except UnsafeDownload as exc:
        raise UnsafeDownload(f"model {entry.name} is not here and the download was refused: "
                             f"{' '.join(str(exc).split())}") from exc
    except (ModelError, OSError) as exc:
        raise ModelError(f"model {entry.name} is not here and could not be downloaded "
                         f"({' '.join(str(exc).split())}): run 'edge-infer models pull {entry.name}' where there "
                         f"is internet, or copy {entry.file_name} into {directory}") from exc
