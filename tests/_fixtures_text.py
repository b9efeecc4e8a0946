"""Generated text-data fixtures: review CSVs in the Amazon layout, archives (good and
hostile) and a local HTTP server, so no test touches the network or real data."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import io
import random
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import Iterator

WORDS = ["great", "awful", "Battery", "works", "broke", "LOVE", "it", "the", "price", "was", "fine", "zero", "stars"]


def review_rows(count: int, classes: int, seed: int = 0) -> list[tuple[int, str, str]]:
    """(label counted from 1, title, body) rows; every class present, bodies with quotes,
    commas and a newline that the Amazon files write as backslash-n."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = index % classes + 1
        title = " ".join(rng.choice(WORDS) for _ in range(3))
        body = f'review {index}, "quoted" {" ".join(rng.choice(WORDS) for _ in range(6))}\nsecond line'
        rows.append((label, title, body))
    return rows


def write_amazon_csv(path: Path, rows: list[tuple[int, str, str]]) -> None:
    """The original files' format: every field quoted, no header, newlines escaped as \\n."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for label, title, body in rows:
            writer.writerow([str(label), title.replace("\n", "\\n"), body.replace("\n", "\\n")])


def amazon_folder(root: Path, folder: str, train: list, test: list) -> Path:
    write_amazon_csv(root / folder / "train.csv", train)
    write_amazon_csv(root / folder / "test.csv", test)
    (root / folder / "readme.txt").write_text("generated fixture in the layout of the original archive\n")
    return root / folder


def tar_bytes(members: dict[str, bytes], compress: bool = True) -> bytes:
    """A tar archive (gzip-compressed by default) of `members`: name -> content; a folder
    entry is written for each parent, as `tar czf` does."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as bundle:
        # parents of hostile names are left out, so the hostile member itself is what gets refused
        plain = [name for name in members if "/" in name and ".." not in name and not name.startswith("/")]
        folders = sorted({str(Path(name).parent) for name in plain})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            bundle.addfile(info)
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            bundle.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def tar_with_links(*links: tuple[str, str], hard: bool = False) -> bytes:
    """A .tgz of symbolic (or hard) links, each (member name, link target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
            info.linkname = target
            bundle.addfile(info)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, content in members.items():
            bundle.writestr(name, content)
    return buffer.getvalue()


def amazon_archive(folder: str, train: list, test: list, tmp: Path) -> tuple[bytes, dict[str, str]]:
    """A .tgz in the exact layout of the published archive, and the md5 of its two CSVs."""
    staged = amazon_folder(tmp, folder, train, test)
    members = {f"{folder}/{name}": (staged / name).read_bytes() for name in ("train.csv", "test.csv", "readme.txt")}
    md5 = {name: hashlib.md5((staged / name).read_bytes()).hexdigest() for name in ("train.csv", "test.csv")}
    return tar_bytes(members), md5


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def listing(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its content (None for folders): equal listings mean
    byte-for-byte equal trees."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): (path.read_bytes() if path.is_file() else None)
        for path in sorted(folder.rglob("*"))
    }


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()


def serve_folder(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """A generator for a pytest fixture: an HTTP server on 127.0.0.1 (a free port) serving
    `folder`; yields (base url, list of requested paths) and shuts the server down after."""
    requests: list[str] = []
    handler = type("Handler", (QuietHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
