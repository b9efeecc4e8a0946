"""Character-level text classification data: Amazon reviews (the char-CNN paper, NIPS 2015), any review
CSV, and the rt-polarity and movie-review corpora of Pang & Lee.

Encoding: the official LIT code's (stanford-futuredata/lit-code, vdcnn/trainlit.py: its
`Vocab(ALPHABET, offset=2, unknown=1)` and `PadOrTruncate(1014)`), so that ids are those
its VDCNN embedding of 69 rows was trained on. Text is lower-cased and cut or padded to
`max_length` characters (1014 in both papers). Each character maps to one id that fits in
a byte:

    0          padding (after the end of the text)
    1          unknown: any character outside the alphabet (accented letters, emoji, tabs,
               newlines, the backslash, `@` and the ASCII caret `^`)
    2 .. 68    the 67 symbols of `ALPHABET`, in its order: the 26 letters a-z, the 10
               digits 0-9, the 30 punctuation marks  - , ; . ! ? : ' " / | _ # $ % ˆ & * ~ ` + = < > ( ) [ ] { }
               and the space (id 68, `SPACE_ID`)

The official string is close to the char-CNN alphabet of Zhang, Zhao & LeCun (2015),
without its backslash, `@` and newline and with the space; its caret is U+02C6 MODIFIER
LETTER CIRCUMFLEX, not ASCII `^` (as in a copy from the paper's PDF), so `^` is unknown
there and here. The Amazon files write a newline as backslash-n; the official code reads those two
characters as they are (unknown, then `n`), and so does `AMAZON_LAYOUT`.

A split of a large CSV is parsed once, streamed in chunks, into a cache folder under the
data root holding a uint8 token matrix `tokens.npy` (N x max_length) and `labels.npy`.
The token matrix is opened as a read-only numpy memmap, so 3.6 million reviews (3.6 GB
of tokens) are paged in from disk as they are used, never parsed or held twice. (Indexing
a split, as `build_data`'s validation hold-out does, gathers the chosen rows into memory:
one byte a character, about 3.3 GB for the polarity training set, where int64 ids would
need 26 GB.) Parsing 3.6 M reviews takes about a minute, once; later loads take milliseconds.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import struct
import tarfile
import tempfile
import warnings
import zipfile
from array import array
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
import torch

from lit.data.base import Augment, RawData, Split, register_dataset, stratified_holdout
from lit.data.download import ChecksumError, download, file_digest, safe_extract

# the official LIT code's alphabet, character for character (U+02C6 where `^` was meant)
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"/|_#$%\u02c6&*~`+=<>()[]{} "
PAD_ID, UNKNOWN_ID = 0, 1
FIRST_SYMBOL_ID = 2
SPACE_ID = FIRST_SYMBOL_ID + ALPHABET.index(" ")  # 68
VOCAB_SIZE = FIRST_SYMBOL_ID + len(ALPHABET)  # 69 ids; the vdcnn model's default `vocab_size`
DEFAULT_MAX_LENGTH = 1014
CACHE_FORMAT = "lit-text-cache/2"  # change when the encoding changes: old caches are then ignored
ROWS_PER_CHUNK = 16384

log = logging.getLogger(__name__)

assert len(ALPHABET) == 67 and len(set(ALPHABET)) == 67


def ascii_lookup() -> np.ndarray:
    """Id of every ASCII code point; everything else is unknown."""
    table = np.full(128, UNKNOWN_ID, dtype=np.uint8)
    for offset, symbol in enumerate(ALPHABET):
        if ord(symbol) < 128:
            table[ord(symbol)] = FIRST_SYMBOL_ID + offset
    return table


ASCII_IDS = ascii_lookup()
# the alphabet's symbols beyond ASCII (code point -> id): only U+02C6
WIDE_IDS = {ord(symbol): FIRST_SYMBOL_ID + offset for offset, symbol in enumerate(ALPHABET) if ord(symbol) >= 128}


def encode_texts(texts: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH) -> np.ndarray:
    """Token ids (len(texts), max_length) as uint8: lower-cased, truncated, padded with 0."""
    # lower() may lengthen a string (one capital becoming two letters), hence the second cut
    clipped = [text[:max_length].lower()[:max_length] for text in texts]
    lengths = np.fromiter(map(len, clipped), dtype=np.int64, count=len(clipped))
    codes = np.frombuffer("".join(clipped).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    ids = np.where(codes < 128, ASCII_IDS[np.minimum(codes, 127)], UNKNOWN_ID).astype(np.uint8)
    for code, symbol_id in WIDE_IDS.items():
        ids[codes == code] = symbol_id
    tokens = np.full((len(clipped), max_length), PAD_ID, dtype=np.uint8)
    tokens[np.arange(max_length) < lengths[:, None]] = ids  # fills row by row, left-aligned
    return tokens


def decode_ids(ids: Iterable[int]) -> str:
    """Readable text of token ids: padding dropped, unknown shown as U+FFFD (for inspection)."""
    symbols = {PAD_ID: "", UNKNOWN_ID: "\ufffd"}
    symbols.update({FIRST_SYMBOL_ID + i: s for i, s in enumerate(ALPHABET)})
    return "".join(symbols[int(i)] for i in ids)


@dataclass(frozen=True)
class CsvLayout:
    """How to read one review CSV. Columns are 0-based indices, or header names when
    `has_header`; `text_columns=None` joins every column but the label, with spaces."""

    label_column: int | str = 0
    text_columns: tuple[int | str, ...] | None = None
    has_header: bool = False
    label_offset: int = 0  # subtracted from integer labels: 1 for files that count classes from 1
    label_names: tuple[str, ...] | None = None  # string labels, in class-index order
    escaped_newlines: bool = False  # the original files write a newline as backslash-n
    encoding: str = "utf-8"
    delimiter: str = ","


def column_index(column: int | str, header: list[str] | None, path: Path) -> int:
    if isinstance(column, int):
        return column
    if header is None:
        raise ValueError(f"{path}: column {column!r} is a name, but has_header is false (use a 0-based index)")
    if column not in header:
        raise ValueError(f"{path}: no column named {column!r} (header: {header})")
    return header.index(column)


def parse_label(raw: str, layout: CsvLayout, where: str) -> int:
    if layout.label_names is not None:
        try:
            return layout.label_names.index(raw.strip())
        except ValueError:
            raise ValueError(f"{where}: label {raw!r} is not one of label_names {list(layout.label_names)}") from None
    try:
        label = int(raw) - layout.label_offset
    except ValueError:
        raise ValueError(
            f"{where}: label {raw!r} is not an integer; for string labels pass label_names=[...]"
        ) from None
    if label < 0:
        raise ValueError(f"{where}: label {raw!r} minus label_offset {layout.label_offset} is negative")
    return label


def read_csv_rows(path: Path, layout: CsvLayout, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """Stream (class index, text) from a CSV, at most `limit` rows, one row in memory at a time."""
    csv.field_size_limit(1 << 30)  # process-wide; the default 128 KiB rejects long reviews
    with open(path, newline="", encoding=layout.encoding, errors="replace") as stream:
        reader = csv.reader(stream, delimiter=layout.delimiter)
        header = next(reader, None) if layout.has_header else None
        label_at = column_index(layout.label_column, header, path)
        text_at = None if layout.text_columns is None else [column_index(c, header, path) for c in layout.text_columns]
        yielded = 0
        for row in reader:
            if limit is not None and yielded >= limit:
                return
            if not row:  # a blank line, as at the end of some hand-edited files
                continue
            where = f"{path.name} line {reader.line_num}"
            if label_at >= len(row):
                raise ValueError(f"{where}: {len(row)} columns, but label_column is {layout.label_column!r}")
            columns = [i for i in range(len(row)) if i != label_at] if text_at is None else text_at
            text = " ".join(row[i] for i in columns if i < len(row) and row[i])
            if layout.escaped_newlines:
                text = text.replace("\\n", "\n")
            yield parse_label(row[label_at], layout, where), text
            yielded += 1


def batched(rows: Iterator[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---- the token cache: parse a CSV once, then memory-map it --------------------------------

NPY_HEADER_BYTES = 128


def npy_header(rows: int, max_length: int) -> bytes:
    """A .npy (format 1.0) header for a C-ordered uint8 matrix, always NPY_HEADER_BYTES long:
    written first as a placeholder and rewritten once the row count is known, so the rows
    stream straight to their final file."""
    described = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({rows}, {max_length}), }}"
    body = described.ljust(NPY_HEADER_BYTES - 10 - 1) + "\n"  # 10 bytes of magic, version, length
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


def write_token_cache(rows: Iterator[tuple[int, str]], max_length: int, folder: Path) -> int:
    """Encode `rows` chunk by chunk into `folder`/tokens.npy and labels.npy; returns the count."""
    labels = array("q")  # 8 bytes a label: 29 MB for 3.6 M reviews, where a list would take 130 MB
    count = 0
    with open(folder / "tokens.npy", "wb") as out:
        out.write(npy_header(0, max_length))
        for batch in batched(rows, ROWS_PER_CHUNK):
            labels.extend(label for label, _ in batch)
            out.write(encode_texts([text for _, text in batch], max_length).tobytes())
            count += len(batch)
        out.seek(0)
        out.write(npy_header(count, max_length))
        out.flush()
        os.fsync(out.fileno())
    np.save(folder / "labels.npy", np.frombuffer(labels, dtype=np.int64))
    return count


def cache_folder(source: Path, layout: CsvLayout, max_length: int, limit: int | None, cache_root: Path) -> Path:
    """One folder per (file version, reading options): a changed file or option never reuses old tokens."""
    status = source.stat()
    identity = {
        "format": CACHE_FORMAT,
        "alphabet": ALPHABET,
        "source": str(source.resolve()),
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
        "layout": asdict(layout),
        "max_length": max_length,
        "limit": limit,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root / f"{source.stem}-{key}"


def build_token_cache(source: Path, layout: CsvLayout, max_length: int, limit: int | None, folder: Path) -> None:
    """Parse `source` into a staging folder renamed to `folder` at the end: a run killed while
    parsing leaves no cache that looks complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        log.info("encoding %s into %s (once; later loads map the cache)", source, folder)
        count = write_token_cache(read_csv_rows(source, layout, limit), max_length, staging)
        if count == 0:
            raise ValueError(f"{source}: no data rows")
        meta = {"format": CACHE_FORMAT, "source": str(source), "rows": count, "max_length": max_length,
                "limit": limit, "layout": asdict(layout), "alphabet": ALPHABET}
        (staging / "meta.json").write_text(json.dumps(meta, indent=1))
        staging.chmod(0o755)  # mkdtemp makes it private; a shared data root should stay readable
        try:
            os.rename(staging, folder)
        except OSError:
            if not folder.is_dir():
                raise  # otherwise another process finished the same cache first: use its copy
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_token_cache(folder: Path) -> Split:
    """Tokens as a tensor over a read-only memmap of the cache file (paged in on use), labels in memory."""
    tokens = np.load(folder / "tokens.npy", mmap_mode="r")
    with warnings.catch_warnings():
        # read-only on purpose: the map is the cache file itself, and token ids are never written in place
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        inputs = torch.from_numpy(tokens)
    labels = torch.from_numpy(np.load(folder / "labels.npy")).long()
    return Split(inputs, labels)


def encoded_split(source: Path, layout: CsvLayout, max_length: int, limit: int | None, cache_root: Path) -> Split:
    """The first `limit` rows (all when None) of one CSV: from the cache, or parsed once into it.
    A complete cache of the whole file also serves any limit, as a view of its first rows."""
    whole = cache_folder(source, layout, max_length, None, cache_root)
    if whole.is_dir():
        return first_rows(load_token_cache(whole), limit)
    folder = whole if limit is None else cache_folder(source, layout, max_length, limit, cache_root)
    if not folder.is_dir():
        build_token_cache(source, layout, max_length, limit, folder)
    return load_token_cache(folder)


def first_rows(split: Split, limit: int | None) -> Split:
    return split if limit is None else Split(split.inputs[:limit], split.labels[:limit])


# ---- shared by the builders ----------------------------------------------------------------


def check_options(max_length: int, **limits: int | None) -> None:
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    for key, value in limits.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{key} must be a positive integer or null, got {value!r}")


def text_data(name: str, train: Split, test: Split, num_classes: int | None, class_names: list[str] | None) -> RawData:
    """RawData for a text set; `num_classes` defaults to the class names, else the largest label + 1."""
    highest = max(int(split.labels.max()) for split in (train, test) if len(split))
    if num_classes is None:
        num_classes = len(class_names) if class_names else highest + 1
    if highest >= num_classes:
        raise ValueError(f"data set {name!r}: label {highest} found, but there are {num_classes} classes")
    return RawData(train, test, num_classes, kind="text", augment=Augment(), class_names=class_names)


def holdout(whole: Split, test_fraction: float, split_seed: int, name: str) -> tuple[Split, Split]:
    """A seeded, stratified test split for corpora that ship without one (fixed by `split_seed`,
    not the run seed, so every run is scored on the same texts)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"data set {name!r}: test_fraction must be in (0, 1), got {test_fraction!r}")
    train_idx, test_idx = stratified_holdout(whole.labels, test_fraction, split_seed)
    return whole.subset(train_idx), whole.subset(test_idx)


def resolve_path(root: Path, value: str | Path, option: str, name: str) -> Path:
    """A path option: absolute as given; relative to the working folder, else to the data root."""
    candidate = Path(value).expanduser()
    if not candidate.is_absolute() and not candidate.exists():
        candidate = root / candidate
    if not candidate.exists():
        raise FileNotFoundError(f"data set {name!r}: {option}={str(value)!r} does not exist (also looked in {root})")
    return candidate


# ---- Amazon reviews (Zhang, Zhao & LeCun 2015) ---------------------------------------------


@dataclass(frozen=True)
class ArchiveSource:
    """Where a data set's archive is published and how a download of it is checked."""

    url: str
    folder: str  # the archive's top-level folder, extracted to <root>/<folder>
    md5: str | None = None  # digest of the archive file itself
    sha256: str | None = None
    file_md5: Mapping[str, str] = field(default_factory=dict)  # digests of extracted files inside `folder`

    @property
    def has_checksum(self) -> bool:
        return bool(self.md5 or self.sha256 or self.file_md5)


# The archives are the fast.ai mirror of the original distribution. No full-file digest of
# the mirror's archives is published that we can vouch for, so the download is checked on
# its content instead: the md5 of each extracted CSV as published by torchtext for the
# original files (`_EXTRACTED_FILES_MD5` of its AmazonReviewFull / AmazonReviewPolarity).
# A user who has verified an archive may pass `md5=` / `sha256=` of it, which then replaces
# these checks.
AMAZON_SOURCES: dict[str, ArchiveSource] = {
    "amazon_review_full": ArchiveSource(
        url="https://s3.amazonaws.com/fast-ai-nlp/amazon_review_full_csv.tgz",
        folder="amazon_review_full_csv",
        file_md5={"train.csv": "31b268b09fd794e0ca5a1f59a0358677", "test.csv": "0f1e78ab60f625f2a30eab6810ef987c"},
    ),
    "amazon_review_polarity": ArchiveSource(
        url="https://s3.amazonaws.com/fast-ai-nlp/amazon_review_polarity_csv.tgz",
        folder="amazon_review_polarity_csv",
        file_md5={"train.csv": "520937107c39a2d1d1f66cd410e9ed9e", "test.csv": "f4c8bded2ecbde5f996b675db6228f16"},
    ),
}
AMAZON_CLASS_NAMES = {
    "amazon_review_full": ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"],
    "amazon_review_polarity": ["negative", "positive"],  # 1 and 2 in the files
}
# rows "label","title","body"; labels count from 1; a newline inside a review is written \n,
# which is read as those two characters (backslash: unknown; then n), as the official code
AMAZON_LAYOUT = CsvLayout(label_column=0, text_columns=(1, 2), label_offset=1, escaped_newlines=False)
SPLIT_FILES = ("train.csv", "test.csv")


def verify_extracted(folder: Path, file_md5: Mapping[str, str]) -> None:
    """Check an extracted (still staged) archive: both split files present, digests as published."""
    for name in SPLIT_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"the archive has no {folder.name}/{name}; nothing was extracted")
    for name, expected in file_md5.items():
        actual = file_digest(folder / name, "md5")
        if actual != expected:
            raise ChecksumError(
                f"{folder.name}/{name}: md5 is {actual}, expected {expected} (the published digest of the "
                "original file); nothing was extracted. If you trust this copy, "
                "pass the archive's md5=... or sha256=..."
            )


def fetch_archive(name: str, source: ArchiveSource, root: Path, allow_download: bool) -> Path:
    """The folder holding train.csv and test.csv, downloading and extracting the archive if allowed."""
    folder = root / source.folder
    if all((folder / split).is_file() for split in SPLIT_FILES):
        return folder
    archive_name = Path(urlparse(source.url).path).name
    if not allow_download:
        raise FileNotFoundError(
            f"data set {name!r}: {folder / 'train.csv'} or test.csv is missing; set data.download=true "
            f"(download=True) to fetch {source.url}, or extract {archive_name} into {root}"
        )
    if not source.has_checksum:
        raise ValueError(
            f"data set {name!r}: refusing to download {source.url} without a checksum; "
            "pass md5=... or sha256=... of the archive as data-set options"
        )
    fetched_here = not (root / archive_name).exists()
    archive = download(source.url, root / archive_name, sha256=source.sha256, md5=source.md5)
    try:
        safe_extract(archive, root, verify=lambda staging: verify_extracted(staging / source.folder, source.file_md5))
    except BaseException:
        if fetched_here:  # a refused archive is not kept: the data folder is left as it was
            archive.unlink(missing_ok=True)
        raise
    archive.unlink()  # its content now sits extracted beside it: keeping both doubles the space used
    return folder


def amazon_reviews(name: str, root: Path, allow_download: bool, max_length: int, train_limit: int | None,
                   test_limit: int | None, url: str | None, md5: str | None, sha256: str | None) -> RawData:
    check_options(max_length, train_limit=train_limit, test_limit=test_limit)
    source = AMAZON_SOURCES[name]
    if url:
        source = replace(source, url=url)
    if md5 or sha256:  # a digest the user vouches for replaces the built-in checks
        source = replace(source, md5=md5, sha256=sha256, file_md5={})
    folder = fetch_archive(name, source, root, allow_download)
    cache_root = root / "cache" / "text"
    train = encoded_split(folder / "train.csv", AMAZON_LAYOUT, max_length, train_limit, cache_root)
    test = encoded_split(folder / "test.csv", AMAZON_LAYOUT, max_length, test_limit, cache_root)
    class_names = AMAZON_CLASS_NAMES[name]
    return text_data(name, train, test, len(class_names), class_names)


@register_dataset("amazon_review_full")
def amazon_review_full(root: Path, download: bool = False, max_length: int = DEFAULT_MAX_LENGTH,
                       train_limit: int | None = None, test_limit: int | None = None,
                       url: str | None = None, md5: str | None = None, sha256: str | None = None) -> RawData:
    """Amazon review stars, 5 classes: 3,000,000 training and 650,000 test reviews (title and
    body joined). Expects <root>/amazon_review_full_csv/{train,test}.csv; `download` fetches them.
    `train_limit` / `test_limit` keep the first rows of each file (quick runs parse only those)."""
    return amazon_reviews("amazon_review_full", root, download, max_length, train_limit, test_limit, url, md5, sha256)


@register_dataset("amazon_review_polarity")
def amazon_review_polarity(root: Path, download: bool = False, max_length: int = DEFAULT_MAX_LENGTH,
                           train_limit: int | None = None, test_limit: int | None = None,
                           url: str | None = None, md5: str | None = None, sha256: str | None = None) -> RawData:
    """Amazon review polarity, 2 classes (1-2 stars negative, 4-5 positive): 3,600,000 training
    and 400,000 test reviews. Layout and options as `amazon_review_full`."""
    return amazon_reviews(
        "amazon_review_polarity", root, download, max_length, train_limit, test_limit, url, md5, sha256
    )


# ---- any review CSV ------------------------------------------------------------------------


def review_files(root: Path, path: str | None, train: str | None, test: str | None) -> tuple[Path, Path | None]:
    """(train file, test file or None) from either `path` (a folder with train.csv and maybe
    test.csv, or one CSV file) or the `train` / `test` options."""
    if path is not None and (train is not None or test is not None):
        raise ValueError("data set 'csv_reviews': give either path=... or train=... / test=..., not both")
    if path is None and train is None:
        raise ValueError(
            "data set 'csv_reviews' needs path=... (a folder with train.csv and test.csv, or one CSV) or train=..."
        )
    if path is None:
        test_file = None if test is None else resolve_path(root, test, "test", "csv_reviews")
        return resolve_path(root, train, "train", "csv_reviews"), test_file
    location = resolve_path(root, path, "path", "csv_reviews")
    if location.is_file():
        return location, None
    if not (location / "train.csv").is_file():
        raise FileNotFoundError(f"data set 'csv_reviews': path={path!r} is a folder without train.csv")
    test_file = location / "test.csv"
    return location / "train.csv", (test_file if test_file.is_file() else None)


@register_dataset("csv_reviews")
def csv_reviews(root: Path, download: bool = False, path: str | None = None, train: str | None = None,
                test: str | None = None, label_column: int | str = 0, text_columns: Sequence[int | str] | None = None,
                label_offset: int = 0, has_header: bool = False, label_names: Sequence[str] | None = None,
                num_classes: int | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                train_limit: int | None = None, test_limit: int | None = None, test_fraction: float | None = None,
                split_seed: int = 0, escaped_newlines: bool = False, encoding: str = "utf-8",
                delimiter: str = ",") -> RawData:
    """Reviews from CSV files: one row per review, a label column and one or more text columns
    (`text_columns` null: every other column). Labels are integers (minus `label_offset`) or,
    with `label_names`, strings mapped to their position in that list. A single file is split
    with a seeded, stratified `test_fraction`. There is nothing to download (`download` is ignored).
    Example, the 5-class sample with header `target,input`: has_header=True, label_column="target",
    label_names=["Very Negative", "Negative", "Neutral", "Positive", "Very Positive"], test_fraction=0.2."""
    check_options(max_length, train_limit=train_limit, test_limit=test_limit)
    layout = CsvLayout(label_column, None if text_columns is None else tuple(text_columns), has_header, label_offset,
                       None if label_names is None else tuple(label_names), escaped_newlines, encoding, delimiter)
    train_file, test_file = review_files(root, path, train, test)
    cache_root = root / "cache" / "text"
    if test_file is None:
        if test_fraction is None:
            raise ValueError(f"data set 'csv_reviews': {train_file.name} has no test file beside it; "
                             "pass test=... or test_fraction=... (for example 0.1)")
        whole = encoded_split(train_file, layout, max_length, None, cache_root)
        train_split, test_split = holdout(whole, test_fraction, split_seed, "csv_reviews")
        train_split, test_split = first_rows(train_split, train_limit), first_rows(test_split, test_limit)
    else:
        if test_fraction is not None:
            raise ValueError(
                f"data set 'csv_reviews': test_fraction={test_fraction!r} given, but there is a test file {test_file}"
            )
        train_split = encoded_split(train_file, layout, max_length, train_limit, cache_root)
        test_split = encoded_split(test_file, layout, max_length, test_limit, cache_root)
    names = None if label_names is None else list(label_names)
    return text_data("csv_reviews", train_split, test_split, num_classes, names)


# ---- Pang & Lee polarity corpora (small: encoded in memory, no cache) ----------------------

POLARITY_CLASS_NAMES = ["negative", "positive"]


def corpus_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member path, bytes) of every file in a folder, zip or tar archive, read without extracting."""
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file():
                yield file.relative_to(path).as_posix(), file.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as bundle:
            for info in bundle.infolist():
                if not info.is_dir():
                    yield info.filename, bundle.read(info)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as bundle:
            for member in bundle:
                if member.isfile():
                    yield member.name, bundle.extractfile(member).read()
    else:
        raise ValueError(f"{path} is neither a folder nor a zip or tar archive")


def corpus_path(root: Path, path: str | None, name: str, defaults: Sequence[str], how_to_get: str) -> Path:
    if path is not None:
        return resolve_path(root, path, "path", name)
    for default in defaults:
        if (root / default).exists():
            return root / default
    raise FileNotFoundError(f"data set {name!r}: none of {', '.join(defaults)} in {root}; pass path=... {how_to_get}")


def polarity_data(name: str, texts: list[str], labels: list[int], max_length: int,
                  test_fraction: float, split_seed: int) -> RawData:
    if set(labels) != {0, 1}:
        found = sorted(set(labels))
        raise ValueError(f"data set {name!r}: expected negative and positive texts, found classes {found}")
    whole = Split(torch.from_numpy(encode_texts(texts, max_length)), torch.tensor(labels, dtype=torch.long))
    train, test = holdout(whole, test_fraction, split_seed, name)
    return text_data(name, train, test, 2, POLARITY_CLASS_NAMES)


@register_dataset("sentence_polarity")
def sentence_polarity(root: Path, download: bool = False, path: str | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                      test_fraction: float = 0.1, split_seed: int = 0) -> RawData:
    """rt-polarity (Pang & Lee 2005): 5,331 positive and 5,331 negative review snippets, one per
    line of rt-polarity.pos / rt-polarity.neg (latin-1). `path`: the NLTK sentence_polarity.zip,
    the original rt-polaritydata.tar.gz, or an extracted folder. No official test split: a seeded,
    stratified `test_fraction` is held out. Not downloaded (`download` is ignored)."""
    check_options(max_length)
    source = corpus_path(root, path, "sentence_polarity",
                         ("sentence_polarity.zip", "sentence_polarity", "rt-polaritydata.tar.gz", "rt-polaritydata"),
                         "to the NLTK corpus sentence_polarity.zip or the original rt-polaritydata.tar.gz")
    texts, labels = [], []
    for member, content in corpus_files(source):
        kind = Path(member).name
        if kind in ("rt-polarity.neg", "rt-polarity.pos"):
            snippets = [line.strip() for line in content.decode("latin-1").splitlines() if line.strip()]
            texts += snippets
            labels += [POLARITY_CLASS_NAMES.index("positive" if kind.endswith("pos") else "negative")] * len(snippets)
    return polarity_data("sentence_polarity", texts, labels, max_length, test_fraction, split_seed)


@register_dataset("movie_reviews")
def movie_reviews(root: Path, download: bool = False, path: str | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                  test_fraction: float = 0.1, split_seed: int = 0) -> RawData:
    """Pang & Lee polarity v2.0: 1,000 positive and 1,000 negative full movie reviews, one per
    .txt file under pos/ and neg/. `path`: the NLTK movie_reviews.zip, the original
    review_polarity.tar.gz, or an extracted folder. Split and options as `sentence_polarity`."""
    check_options(max_length)
    source = corpus_path(root, path, "movie_reviews", ("movie_reviews.zip", "movie_reviews", "review_polarity.tar.gz"),
                         "to the NLTK corpus movie_reviews.zip or the original review_polarity.tar.gz")
    texts, labels = [], []
    for member, content in corpus_files(source):
        folder = Path(member).parent.name
        if member.endswith(".txt") and folder in ("neg", "pos"):
            texts.append(content.decode("latin-1").strip())
            labels.append(POLARITY_CLASS_NAMES.index("positive" if folder == "pos" else "negative"))
    return polarity_data("movie_reviews", texts, labels, max_length, test_fraction, split_seed)
