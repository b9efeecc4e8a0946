"""Text data: the character encoding, CSV reading, the memory-mapped token cache, and the
builders (Amazon layout, generic review CSVs, rt-polarity, movie reviews) on generated files."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pytest
import torch

import lit.data.text as text
from _fixtures_text import amazon_folder, review_rows
from lit.data import build_data
from lit.data.text import (
    ALPHABET,
    FIRST_SYMBOL_ID,
    PAD_ID,
    SPACE_ID,
    UNKNOWN_ID,
    VOCAB_SIZE,
    CsvLayout,
    decode_ids,
    encode_texts,
    read_csv_rows,
)

FIVE_NAMES = ["Very Negative", "Negative", "Neutral", "Positive", "Very Positive"]


# ---------------------------------------------------------------- encoding


def test_alphabet_is_the_official_lit_codes_67_symbols():
    # stanford-futuredata/lit-code, vdcnn/trainlit.py: Vocab("...", offset=2, unknown=1), with
    # U+02C6 (modifier letter circumflex) where the char-CNN paper meant '^', and the space last
    punctuation = "-,;.!?:'\"/|_#$%\u02c6&*~`+=<>()[]{}"
    assert ALPHABET == "abcdefghijklmnopqrstuvwxyz" + "0123456789" + punctuation + " "
    assert len(ALPHABET) == len(set(ALPHABET)) == 67
    assert (PAD_ID, UNKNOWN_ID, FIRST_SYMBOL_ID) == (0, 1, 2)
    assert ALPHABET.index("a") + FIRST_SYMBOL_ID == 2 and SPACE_ID == 68
    assert VOCAB_SIZE == 69 and VOCAB_SIZE <= 256  # the official embedding's 69 rows; ids fit in uint8


def test_encoding_ids_lowercase_unknown_and_padding():
    tokens = encode_texts(["Az 9\n", "é\t?"], max_length=8)
    assert tokens.dtype == np.uint8 and tokens.shape == (2, 8)
    a, z, nine, question = (FIRST_SYMBOL_ID + ALPHABET.index(c) for c in "az9?")
    # the newline is not in the official alphabet: unknown
    assert tokens[0].tolist() == [a, z, SPACE_ID, nine, UNKNOWN_ID, PAD_ID, PAD_ID, PAD_ID]
    assert tokens[1].tolist() == [UNKNOWN_ID, UNKNOWN_ID, question, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]
    assert encode_texts(["HELLO"], 8).tolist() == encode_texts(["hello"], 8).tolist()


def test_symbols_outside_the_official_alphabet_are_unknown_and_its_circumflex_is_known():
    tokens = encode_texts(["\\@^\n\u02c6"], max_length=5)
    circumflex = FIRST_SYMBOL_ID + ALPHABET.index("\u02c6")
    assert tokens[0].tolist() == [UNKNOWN_ID, UNKNOWN_ID, UNKNOWN_ID, UNKNOWN_ID, circumflex]


def test_truncation_keeps_the_beginning():
    tokens = encode_texts(["abcdefghij", ""], max_length=4)
    assert decode_ids(tokens[0]) == "abcd"
    assert tokens[1].tolist() == [PAD_ID] * 4


def test_every_symbol_round_trips():
    tokens = encode_texts([ALPHABET], max_length=len(ALPHABET))
    assert decode_ids(tokens[0]) == ALPHABET
    assert tokens[0].tolist() == list(range(FIRST_SYMBOL_ID, VOCAB_SIZE))


def test_lower_casing_that_lengthens_text_still_fits():
    # 'İ' lower-cases to two code points: the row must still be cut at max_length
    assert encode_texts(["İİİİ"], max_length=3).shape == (1, 3)


# ---------------------------------------------------------------- CSV reading


def write_text(path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def test_csv_quotes_commas_and_escaped_newlines(tmp_path):
    write_text(
        tmp_path / "reviews.csv",
        '"2","Title, with comma","He said ""wow"".\\nNext line"\n'
        '"1","multi\nline title","plain"\n',
    )
    layout = CsvLayout(text_columns=(1, 2), label_offset=1, escaped_newlines=True)
    rows = list(read_csv_rows(tmp_path / "reviews.csv", layout))
    assert rows == [(1, 'Title, with comma He said "wow".\nNext line'), (0, "multi\nline title plain")]
    unescaped = list(read_csv_rows(tmp_path / "reviews.csv", CsvLayout(text_columns=(2,))))
    assert unescaped[0] == (2, 'He said "wow".\\nNext line')


def test_csv_errors_name_the_line_and_value(tmp_path):
    write_text(tmp_path / "bad.csv", "1,fine\nfive,not a number\n")
    with pytest.raises(ValueError, match=r"bad.csv line 2: label 'five' is not an integer.*label_names"):
        list(read_csv_rows(tmp_path / "bad.csv", CsvLayout()))
    write_text(tmp_path / "names.csv", "target,input\nGood,x\nMeh,y\n")
    layout = CsvLayout(label_column="target", has_header=True, label_names=("Bad", "Good"))
    with pytest.raises(ValueError, match=r"line 3: label 'Meh' is not one of label_names \['Bad', 'Good'\]"):
        list(read_csv_rows(tmp_path / "names.csv", layout))
    with pytest.raises(ValueError, match="no column named 'stars'"):
        list(read_csv_rows(tmp_path / "names.csv", CsvLayout(label_column="stars", has_header=True)))


# ---------------------------------------------------------------- Amazon layout and the cache


@pytest.fixture
def amazon_root(tmp_path):
    root = tmp_path / "data"
    amazon_folder(root, "amazon_review_full_csv", review_rows(60, 5, seed=1), review_rows(20, 5, seed=2))
    return root


def test_amazon_layout_loads_labels_from_zero_and_joins_title_and_body(amazon_root):
    raw = text.amazon_review_full(amazon_root, download=False, max_length=256)
    rows = review_rows(60, 5, seed=1)
    assert raw.kind == "text" and raw.num_classes == 5 and len(raw.class_names) == 5
    assert raw.train.inputs.shape == (60, 256) and raw.train.inputs.dtype == torch.uint8
    assert raw.train.labels.tolist() == [label - 1 for label, _, _ in rows]
    label, title, body = rows[7]
    # the file writes the body's newline as backslash-n: read as those two characters, as the
    # official code (backslash unknown, then n)
    expected = f"{title} {body}".lower().replace("\n", "\ufffdn")
    assert decode_ids(raw.train.inputs[7]) == expected[:256]
    assert "\ufffdnsecond line" in decode_ids(raw.train.inputs[7])


def test_second_load_uses_the_cache_without_parsing(amazon_root, monkeypatch):
    first = build_data("amazon_review_full", root=amazon_root, max_length=128)
    cached = sorted(p.name for p in (amazon_root / "cache" / "text").iterdir())
    assert len(cached) == 2 and not any(name.startswith(".") for name in cached)  # train and test, no leftovers

    def refuse(*args, **kwargs):
        raise AssertionError("the CSV was parsed again")

    monkeypatch.setattr(text, "read_csv_rows", refuse)
    second = build_data("amazon_review_full", root=amazon_root, max_length=128)
    assert torch.equal(first.train.inputs, second.train.inputs)
    assert torch.equal(first.test.labels, second.test.labels)


def test_cache_is_a_memory_map_of_the_token_file(amazon_root, monkeypatch):
    text.amazon_review_full(amazon_root, download=False, max_length=64)  # builds the cache
    loaded = []
    real_load = np.load

    def spy(*args, **kwargs):
        array = real_load(*args, **kwargs)
        loaded.append(array)
        return array

    monkeypatch.setattr(np, "load", spy)
    raw = text.amazon_review_full(amazon_root, download=False, max_length=64)
    token_maps = [array for array in loaded if isinstance(array, np.memmap)]
    assert len(token_maps) == 2  # train and test tokens; labels are ordinary arrays
    assert raw.train.inputs.data_ptr() == token_maps[0].ctypes.data  # the tensor is the map, not a copy
    assert not token_maps[0].flags.writeable


def test_changed_options_do_not_reuse_a_cache(amazon_root):
    short = text.amazon_review_full(amazon_root, download=False, max_length=32)
    long = text.amazon_review_full(amazon_root, download=False, max_length=96)
    assert short.train.inputs.shape[1] == 32 and long.train.inputs.shape[1] == 96
    assert torch.equal(long.train.inputs[:, :32], short.train.inputs)


def test_limits_parse_only_the_first_rows_and_reuse_a_full_cache(amazon_root, monkeypatch):
    parsed = []
    real_rows = text.read_csv_rows

    def counting(*args, **kwargs):
        for row in real_rows(*args, **kwargs):
            parsed.append(row)
            yield row

    monkeypatch.setattr(text, "read_csv_rows", counting)
    limited = text.amazon_review_full(amazon_root, download=False, max_length=64, train_limit=10, test_limit=4)
    assert len(limited.train) == 10 and len(limited.test) == 4 and len(parsed) == 14
    full = text.amazon_review_full(amazon_root, download=False, max_length=64)
    parsed.clear()
    again = text.amazon_review_full(amazon_root, download=False, max_length=64, train_limit=10)
    assert not parsed and torch.equal(again.train.inputs, full.train.inputs[:10])
    assert torch.equal(limited.train.inputs, again.train.inputs)


def test_a_failed_parse_leaves_no_cache(tmp_path):
    root = tmp_path / "data"
    folder = amazon_folder(root, "amazon_review_full_csv", review_rows(10, 5), review_rows(5, 5))
    with open(folder / "train.csv", "a", encoding="utf-8") as stream:
        stream.write('"9","out of range","label 9 is not a star rating"\n')
    with pytest.raises(ValueError, match="label 8 found, but there are 5 classes"):
        text.amazon_review_full(root, download=False, max_length=32)
    write_text(folder / "test.csv", '"x","not a label","body"\n')
    cache = root / "cache" / "text"
    before = {p.name for p in cache.iterdir()}
    with pytest.raises(ValueError, match="test.csv line 1: label 'x' is not an integer"):
        text.amazon_review_full(root, download=False, max_length=48)
    added = {p.name for p in cache.iterdir()} - before
    assert [name.split("-")[0] for name in added] == ["train"]  # the test file left nothing, not even a temp


def test_missing_amazon_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"amazon_review_polarity_csv.*data.download=true.*fast-ai-nlp"):
        build_data("amazon_review_polarity", root=tmp_path)
    assert not (tmp_path / "amazon_review_polarity_csv").exists()


# ---------------------------------------------------------------- generic review CSVs


def test_csv_reviews_string_labels_with_header_and_test_fraction(tmp_path):
    path = tmp_path / "sample.csv"
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["target", "input"])
        for index in range(100):
            writer.writerow([FIVE_NAMES[index % 5], f"Review number {index}, said \"meh\""])
    options = dict(path=str(path), has_header=True, label_column="target", label_names=FIVE_NAMES, test_fraction=0.2)
    raw = text.csv_reviews(tmp_path / "data", **options)
    assert raw.num_classes == 5 and raw.class_names == FIVE_NAMES
    assert len(raw.train) == 80 and len(raw.test) == 20
    assert torch.bincount(raw.test.labels).tolist() == [4] * 5  # stratified
    index = int(raw.test.labels.argmax())
    assert "review number" in decode_ids(raw.test.inputs[index])
    again = text.csv_reviews(tmp_path / "data", **options)
    assert torch.equal(raw.test.inputs, again.test.inputs)  # the hold-out is fixed by split_seed
    other = text.csv_reviews(tmp_path / "data", split_seed=1, **options)
    assert not torch.equal(raw.test.inputs, other.test.inputs)


def test_csv_reviews_folder_with_columns_and_offset(tmp_path):
    folder = tmp_path / "reviews"
    write_text(folder / "train.csv", "id,stars,text,extra\n7,3,Nice one,x\n8,1,Bad one,y\n9,2,So so,z\n")
    write_text(folder / "test.csv", "id,stars,text,extra\n1,1,Nope,q\n")
    raw = build_data("csv_reviews", root=tmp_path / "data", val_fraction=0.0, path=str(folder), has_header=True,
                     label_column="stars", text_columns=["text"], label_offset=1, max_length=16)
    assert raw.num_classes == 3 and raw.class_names is None
    assert raw.train.labels.tolist() == [2, 0, 1] and raw.test.labels.tolist() == [0]
    assert [decode_ids(row) for row in raw.train.inputs] == ["nice one", "bad one", "so so"]
    assert raw.in_channels == 16  # what the engine passes the model as in_channels: the length


def test_csv_reviews_text_columns_default_to_all_but_the_label(tmp_path):
    write_text(tmp_path / "train.csv", "0,alpha,beta\n1,gamma,delta\n")
    write_text(tmp_path / "test.csv", "1,x,y\n")
    raw = text.csv_reviews(tmp_path, train="train.csv", test="test.csv", max_length=12)
    assert decode_ids(raw.train.inputs[1]) == "gamma delta"


def test_csv_reviews_option_errors(tmp_path):
    write_text(tmp_path / "only.csv", "0,a\n1,b\n")
    with pytest.raises(ValueError, match="test_fraction"):
        text.csv_reviews(tmp_path, path=str(tmp_path / "only.csv"))
    with pytest.raises(FileNotFoundError, match="path='missing.csv' does not exist"):
        text.csv_reviews(tmp_path, path="missing.csv")
    with pytest.raises(ValueError, match="either path"):
        text.csv_reviews(tmp_path, path="only.csv", train="only.csv")
    with pytest.raises(ValueError, match="max_length must be a positive integer, got 0"):
        text.csv_reviews(tmp_path, path="only.csv", test_fraction=0.5, max_length=0)
    with pytest.raises(ValueError, match="unexpected keyword argument 'labels'"):
        build_data("csv_reviews", root=tmp_path, path="only.csv", labels=["a"])


# ---------------------------------------------------------------- Pang & Lee corpora


def polarity_zip(path, positives: list[str], negatives: list[str]) -> None:
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("sentence_polarity/README.txt", "generated")
        bundle.writestr("sentence_polarity/rt-polarity.pos", "\n".join(positives).encode("latin-1"))
        bundle.writestr("sentence_polarity/rt-polarity.neg", "\n".join(negatives).encode("latin-1"))


def test_sentence_polarity_from_a_zip(tmp_path):
    positives = [f"a charming , café-set film number {i} ." for i in range(30)]
    negatives = [f"dull and tedious number {i} ." for i in range(30)] + [""]
    polarity_zip(tmp_path / "sentence_polarity.zip", positives, negatives)
    raw = text.sentence_polarity(tmp_path, max_length=64, test_fraction=0.2)
    assert raw.class_names == ["negative", "positive"] and raw.num_classes == 2
    assert len(raw.train) == 48 and len(raw.test) == 12  # the empty line is dropped
    assert torch.bincount(raw.test.labels).tolist() == [6, 6]
    texts = [decode_ids(row) for row in raw.train.inputs]
    assert all(("charming" in t) == (label == 1) for t, label in zip(texts, raw.train.labels.tolist()))
    assert any("caf\ufffd-set" in t for t in texts)  # latin-1 'é' decoded, then unknown to the alphabet


def test_movie_reviews_from_a_folder(tmp_path):
    for kind in ("pos", "neg"):
        for index in range(10):
            write_text(tmp_path / "movie_reviews" / kind / f"cv{index:03d}.txt", f"{kind} review {index}\nthe end .")
    raw = text.movie_reviews(tmp_path, max_length=32, test_fraction=0.2)
    assert len(raw.train) == 16 and len(raw.test) == 4
    for row, label in zip(raw.test.inputs, raw.test.labels.tolist()):
        assert decode_ids(row).startswith("pos" if label == 1 else "neg")


def test_missing_corpus_names_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="sentence_polarity.zip.*path="):
        text.sentence_polarity(tmp_path)
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("other/readme.txt", "nothing here")
    (tmp_path / "empty.zip").write_bytes(bundle.getvalue())
    with pytest.raises(ValueError, match="expected negative and positive texts"):
        text.sentence_polarity(tmp_path, path=str(tmp_path / "empty.zip"))
