"""Downloads with checksums and safe extraction, against a local HTTP server: a good
archive in the Amazon layout ends up loaded; a corrupted or hostile one leaves every folder
exactly as it was."""

from __future__ import annotations

import hashlib

import pytest
import torch

import lit.data.text as text
from _fixtures_text import (
    amazon_archive,
    listing,
    review_rows,
    serve_folder,
    sha256,
    tar_bytes,
    tar_with_links,
    zip_bytes,
)
from lit.data import build_data
from lit.data.download import ChecksumError, UnsafeArchiveError, download, safe_extract
from lit.data.text import ArchiveSource, decode_ids

FOLDER = "amazon_review_full_csv"
ARCHIVE = "amazon_review_full_csv.tgz"
TRAIN, TEST = review_rows(50, 5, seed=3), review_rows(15, 5, seed=4)


@pytest.fixture
def served(tmp_path):
    """(folder the server publishes, base url, list of requested paths)."""
    folder = tmp_path / "served"
    folder.mkdir()
    for url, requests in serve_folder(folder):
        yield folder, url, requests


@pytest.fixture
def data_root(tmp_path):
    """A data folder that already holds something, to show it is left untouched."""
    root = tmp_path / "work" / "data"
    (root / "other_set").mkdir(parents=True)
    (root / "other_set" / "keep.bin").write_bytes(b"\x00\x01 unrelated")
    (root / "notes.txt").write_text("do not touch\n")
    return root


@pytest.fixture
def good_archive(tmp_path):
    content, file_md5 = amazon_archive(FOLDER, TRAIN, TEST, tmp_path / "build")
    return content, file_md5


def publish(monkeypatch, url: str, **checks) -> None:
    source = ArchiveSource(url=f"{url}/{ARCHIVE}", folder=FOLDER, **checks)
    monkeypatch.setitem(text.AMAZON_SOURCES, "amazon_review_full", source)


def test_good_archive_is_downloaded_verified_extracted_and_loaded(served, data_root, good_archive, monkeypatch):
    folder, url, requests = served
    content, file_md5 = good_archive
    (folder / ARCHIVE).write_bytes(content)
    publish(monkeypatch, url, sha256=sha256(content), file_md5=file_md5)
    data = build_data("amazon_review_full", root=data_root, download=True, val_fraction=0.2, max_length=128)
    assert requests == [f"/{ARCHIVE}"]
    assert sorted(p.name for p in (data_root / FOLDER).iterdir()) == ["readme.txt", "test.csv", "train.csv"]
    assert not (data_root / ARCHIVE).exists()  # removed once extracted
    assert len(data.train) + len(data.val) == 50 and len(data.test) == 15 and data.num_classes == 5
    label, title, body = TEST[3]
    # the escaped newline (backslash-n in the file) reads as unknown then n, as the official code
    expected = f"{title} {body}".lower().replace("\n", "\ufffdn")
    assert data.test.labels[3] == label - 1 and decode_ids(data.test.inputs[3]) == expected
    assert not [p for p in data_root.parent.iterdir() if p.name.startswith(".")]  # no staging left beside it
    again = build_data("amazon_review_full", root=data_root, download=True, val_fraction=0.2, max_length=128)
    assert requests == [f"/{ARCHIVE}"]  # present already: nothing fetched
    assert torch.equal(again.test.inputs, data.test.inputs)


def test_extracted_files_are_checked_when_the_archive_digest_is_unknown(served, data_root, good_archive, monkeypatch):
    folder, url, _ = served
    content, file_md5 = good_archive
    (folder / ARCHIVE).write_bytes(content)
    before = listing(data_root.parent)
    publish(monkeypatch, url, file_md5={**file_md5, "train.csv": hashlib.md5(b"another file").hexdigest()})
    expected = rf"{FOLDER}/train.csv: md5 is {file_md5['train.csv']}.*nothing was extracted"
    with pytest.raises(ChecksumError, match=expected):
        text.amazon_review_full(data_root, download=True)
    assert listing(data_root.parent) == before


def test_corrupted_archive_fails_its_checksum_and_changes_nothing(served, data_root, good_archive, monkeypatch):
    folder, url, _ = served
    content, file_md5 = good_archive
    corrupted = bytearray(content)
    corrupted[len(corrupted) // 2] ^= 0xFF
    (folder / ARCHIVE).write_bytes(bytes(corrupted))
    before = listing(data_root.parent)
    publish(monkeypatch, url, sha256=sha256(content), file_md5=file_md5)
    expected = rf"{ARCHIVE}: sha256 is {sha256(bytes(corrupted))}, expected {sha256(content)}; the file was removed"
    with pytest.raises(ChecksumError, match=expected):
        build_data("amazon_review_full", root=data_root, download=True)
    assert listing(data_root.parent) == before


def test_download_without_any_checksum_is_refused(served, data_root, good_archive, monkeypatch):
    folder, url, requests = served
    (folder / ARCHIVE).write_bytes(good_archive[0])
    publish(monkeypatch, url)
    with pytest.raises(ValueError, match="refusing to download .* without a checksum; pass md5=... or sha256="):
        text.amazon_review_full(data_root, download=True)
    assert requests == []
    # a digest given as an option is the user's own check, and is enough
    raw = text.amazon_review_full(data_root, download=True, md5=hashlib.md5(good_archive[0]).hexdigest(), max_length=64)
    assert len(raw.train) == 50


@pytest.mark.parametrize("evil", ["../evil", f"{FOLDER}/../../evil"])
def test_archive_escaping_the_data_folder_is_refused(served, data_root, good_archive, tmp_path, monkeypatch, evil):
    folder, url, _ = served
    row = b'"1","title","body"\n'
    content = tar_bytes({f"{FOLDER}/train.csv": row, f"{FOLDER}/test.csv": row, evil: b"owned"})
    (folder / ARCHIVE).write_bytes(content)
    before = listing(tmp_path / "work")
    publish(monkeypatch, url, sha256=sha256(content))  # an authentic but hostile archive
    with pytest.raises(UnsafeArchiveError, match=rf"member '{evil}' would be written outside the target folder"):
        text.amazon_review_full(data_root, download=True)
    assert listing(tmp_path / "work") == before
    assert not list(tmp_path.rglob("evil"))


def test_absolute_member_is_refused_and_nothing_is_written(tmp_path):
    outside = tmp_path / "outside" / "evil.txt"
    archive = tmp_path / "abs.tgz"
    archive.write_bytes(tar_bytes({"safe/ok.txt": b"fine", str(outside): b"owned"}))
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(UnsafeArchiveError, match=rf"member '{outside}' has an absolute path"):
        safe_extract(archive, target)
    assert listing(target) == {} and not outside.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abs.tgz", "target"]


@pytest.mark.parametrize(
    "content, member",
    [
        (tar_with_links(("data/link", "../../outside")), "data/link"),
        (tar_with_links(("data/link", "/etc/passwd")), "data/link"),
        (tar_with_links(("data/hard", "../outside"), hard=True), "data/hard"),
        # each link stays inside on paper; through the first, the second points outside
        (tar_with_links(("here", "."), ("here/up", "../outside")), "here/up"),
        (zip_bytes({"ok.txt": b"fine", "../evil.txt": b"owned"}), "../evil.txt"),
        (zip_bytes({"/abs.txt": b"owned"}), "/abs.txt"),
    ],
    # stable ids: the archives' bytes carry a time stamp, and parallel workers must collect the same names
    ids=["symlink-up", "symlink-absolute", "hardlink-up", "chained-symlinks", "zip-up", "zip-absolute"],
)
def test_links_and_zip_members_leaving_the_target_are_refused(tmp_path, content, member):
    archive = tmp_path / "archive.bin"
    archive.write_bytes(content)
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError, match=f"'{member}'"):
        safe_extract(archive, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.bin"]


def test_safe_extract_moves_entries_in_only_after_verification(tmp_path):
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(zip_bytes({"set/a.txt": b"alpha", "set/sub/b.txt": b"beta", "top.txt": b"top"}))
    target = tmp_path / "target"
    (target / "existing").mkdir(parents=True)

    def reject(staging):
        assert (staging / "set" / "sub" / "b.txt").read_bytes() == b"beta"
        raise ValueError("content rejected")

    with pytest.raises(ValueError, match="content rejected"):
        safe_extract(archive, target, verify=reject)
    assert listing(target) == {"existing": None}
    moved = safe_extract(archive, target)
    assert sorted(p.name for p in moved) == ["set", "top.txt"]
    assert (target / "set" / "sub" / "b.txt").read_bytes() == b"beta"
    with pytest.raises(FileExistsError, match="would overwrite set, top.txt"):
        safe_extract(archive, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.zip", "target"]


def test_download_checks_md5_keeps_a_verified_file_and_removes_a_bad_one(served, tmp_path):
    folder, url, requests = served
    (folder / "file.bin").write_bytes(b"payload" * 1000)
    good_md5 = hashlib.md5(b"payload" * 1000).hexdigest()
    dest = tmp_path / "out" / "file.bin"
    assert download(f"{url}/file.bin", dest, md5=good_md5).read_bytes() == b"payload" * 1000
    download(f"{url}/file.bin", dest, md5=good_md5)
    assert requests == ["/file.bin"]  # the verified copy was kept
    with pytest.raises(ChecksumError, match=f"md5 is {good_md5}, expected 0+; the file was removed"):
        download(f"{url}/file.bin", tmp_path / "out" / "other.bin", md5="0" * 32)
    with pytest.raises(OSError, match=rf"download of {url}/missing.bin failed: HTTP Error 404"):
        download(f"{url}/missing.bin", tmp_path / "out" / "missing.bin", sha256="0" * 64)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["file.bin"]
