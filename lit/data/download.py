"""Download with checksums and safe archive extraction, for every data set that fetches files.

Two promises hold whatever goes wrong (a dropped connection, a checksum mismatch, a hostile
or broken archive): nothing is left half-written, and the data folder keeps its old content.
Downloads stream to a temporary file beside the destination and are renamed into place
only once verified; archives are checked member by member before anything is written,
extracted into a staging folder beside the target and moved into place only at the end.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


class ChecksumError(ValueError):
    """A downloaded or extracted file whose digest is not the expected one."""


class UnsafeArchiveError(ValueError):
    """An archive member that would be written outside the target folder, or is not a plain file."""


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_digests(sha256: str | None, md5: str | None) -> dict[str, str]:
    return {name: value.lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}


def verify_file(path: Path, sha256: str | None = None, md5: str | None = None) -> None:
    """Raise `ChecksumError` naming the file, the algorithm and both digests on a mismatch."""
    for algorithm, expected in expected_digests(sha256, md5).items():
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise ChecksumError(
                f"{path.name}: {algorithm} is {actual}, expected {expected} "
                "(a truncated or corrupted download, or another version of the file)"
            )


def download(
    url: str, dest: str | Path, sha256: str | None = None, md5: str | None = None, timeout: float = 60.0
) -> Path:
    """Fetch `url` to the file `dest`, verifying `sha256` and/or `md5` when given.

    An existing `dest` that passes the checksums is kept without a new download. The bytes
    go to a temporary file in `dest`'s folder, renamed over `dest` only after verification;
    on any failure the temporary file is removed and `dest`'s folder is as it was.
    Without a checksum the file is only as trustworthy as the connection: callers that
    know the published digest should pass it.
    """
    dest = Path(dest)
    wanted = expected_digests(sha256, md5)
    if dest.is_file() and wanted:
        try:
            verify_file(dest, sha256, md5)
            return dest
        except ChecksumError:
            log.info("%s exists but fails its checksum: downloading it again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            digests = stream_url(url, tmp, list(wanted), timeout)
        for algorithm, expected in wanted.items():
            if digests[algorithm] != expected:
                raise ChecksumError(
                    f"download of {url}: {algorithm} is {digests[algorithm]}, expected {expected}; "
                    "the file was removed (a truncated or corrupted transfer, or the mirror serves another version)"
                )
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def stream_url(url: str, sink: BinaryIO, algorithms: list[str], timeout: float) -> dict[str, str]:
    """Copy the body of `url` to `sink` in chunks, hashing on the way (no second read)."""
    digests = {name: hashlib.new(name) for name in algorithms}
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                sink.write(block)
                for digest in digests.values():
                    digest.update(block)
    except OSError as err:  # URLError, HTTPError, timeouts and resets are all OSErrors
        raise OSError(f"download of {url} failed: {err}") from err
    return {name: digest.hexdigest() for name, digest in digests.items()}


def is_absolute(name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    return pure.is_absolute() or bool(pure.parts and pure.parts[0].endswith(":"))  # "/x" or "C:/x"


def leaves(name: str, staging: Path) -> bool:
    """Whether the relative path `name` resolves outside `staging` (through `..` or existing links)."""
    resolved = (staging / name.replace("\\", "/")).resolve()
    return not resolved.is_relative_to(staging.resolve())


def check_member_path(name: str, staging: Path) -> None:
    if is_absolute(name):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path; refusing to extract")
    if leaves(name, staging):
        raise UnsafeArchiveError(
            f"archive member {name!r} would be written outside the target folder; refusing to extract"
        )


def check_tar_member(member: tarfile.TarInfo, staging: Path) -> None:
    check_member_path(member.name, staging)
    if member.issym() or member.islnk():
        # a symbolic link resolves from the folder that holds it; a hard link names another member
        base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
        if is_absolute(member.linkname) or leaves(str(base / member.linkname), staging):
            raise UnsafeArchiveError(
                f"archive member {member.name!r} links to {member.linkname!r}, outside the target folder; "
                "refusing to extract"
            )
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"archive member {member.name!r} is a device or pipe; refusing to extract")


def check_zip_member(info: zipfile.ZipInfo, staging: Path) -> None:
    check_member_path(info.filename, staging)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchiveError(f"archive member {info.filename!r} is a symbolic link; refusing to extract")


def extract_all(archive: Path, staging: Path) -> None:
    """Check every member first, then extract: a refused archive writes nothing."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                check_zip_member(info, staging)
            bundle.extractall(staging)
        return
    try:
        bundle = tarfile.open(archive)  # detects gzip, bzip2 and xz compression
    except tarfile.TarError as err:
        raise ValueError(f"{archive.name} is neither a tar nor a zip archive ({err})") from None
    with bundle:
        members = bundle.getmembers()
        for member in members:
            check_tar_member(member, staging)
        try:
            if hasattr(tarfile, "data_filter"):
                # the standard library's guard as well: it resolves links that earlier members created
                bundle.extractall(staging, members=members, filter="data")
            else:
                bundle.extractall(staging, members=members)
        except tarfile.FilterError as err:
            raise UnsafeArchiveError(f"archive refused: {err}; nothing was extracted") from None


def safe_extract(archive: str | Path, target: str | Path, verify: Callable[[Path], None] | None = None) -> list[Path]:
    """Extract `archive` (.tar, .tgz, .tar.gz, .zip) into the folder `target`.

    Members with an absolute path, a `..` that leaves `target`, or a link pointing outside
    are refused before anything is written. Extraction goes to a staging folder beside
    `target`; `verify(staging)` may then check the content (checksums, expected files).
    Only when everything succeeded are the archive's top-level entries moved into `target`;
    an entry that already exists there is refused rather than overwritten. Returns the
    paths of the moved top-level entries.
    """
    archive, target = Path(archive), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract-", dir=target.parent))
    try:
        extract_all(archive, staging)
        if verify is not None:
            verify(staging)
        return move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def move_into_place(staging: Path, target: Path) -> list[Path]:
    entries = sorted(staging.iterdir())
    if not target.exists():
        target.mkdir()
    clashes = [entry.name for entry in entries if (target / entry.name).exists()]
    if clashes:
        raise FileExistsError(f"extracting would overwrite {', '.join(clashes)} in {target}; remove them first")
    moved = []
    for entry in entries:
        os.replace(entry, target / entry.name)
        moved.append(target / entry.name)
    return moved
