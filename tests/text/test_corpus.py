"""Corpus preparation: reading, normalisation, whole-document splits, vocabulary, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from trainyard.config import ConfigError
from trainyard.tasks.text.config import Params
from trainyard.tasks.text.corpus import (
    SPLITS,
    UNKNOWN,
    CorpusError,
    Document,
    Vocabulary,
    drop_repeated_lines,
    encode_corpus,
    normalise,
    read_documents,
    split_documents,
)
from trainyard.tasks.text.prepare import (
    CORPUS_FILE,
    VOCAB_FILE,
    prepare,
    prepare_input_key,
    read_streams,
)

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jam".split()


def _params(name: str, **train) -> Params:
    values = {"corpus": {"name": name}, "train": {"batch_size": 4, "bptt": 16, **train}}
    return Params.from_dict(values)


def _write_corpus(folder: Path, documents: int = 12, words: int = 120, seed: int = 0) -> Path:
    """Writes `documents` files of pseudo-English text; returns the folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(documents):
        text = " ".join(rng.choice(WORDS, size=words)) + ".\n"
        (folder / f"doc{index:02d}.txt").write_text(text, encoding="utf-8")
    return folder


def test_splits_keep_documents_whole_and_are_reproducible(tmp_path: Path):
    documents = [Document(f"d{i}", f"document {i} " * (5 + i)) for i in range(40)]
    config = _params("x").corpus
    first = split_documents(documents, config)
    again = split_documents(documents, config)
    assert {s: [d.name for d in first[s]] for s in SPLITS} == {
        s: [d.name for d in again[s]] for s in SPLITS
    }
    names = [d.name for split in SPLITS for d in first[split]]
    assert sorted(names) == sorted(d.name for d in documents)  # every document, exactly once
    total = sum(len(d.text) for d in documents)
    for split in ("validation", "test"):
        size = sum(len(d.text) for d in first[split])
        assert first[split] and size <= 0.1 * total
    other = split_documents(documents, config.model_copy(update={"seed": 8}))
    assert [d.name for d in other["test"]] != [d.name for d in first["test"]]


def test_every_split_gets_a_document_even_when_they_are_large():
    documents = [Document(f"d{i}", "x" * 1000) for i in range(3)]
    splits = split_documents(documents, _params("x").corpus)
    assert [len(splits[s]) for s in SPLITS] == [1, 1, 1]


def test_encoded_streams_are_the_documents_of_each_split(tmp_path: Path):
    folder = _write_corpus(tmp_path / "corpus")
    params = _params(str(folder))
    prepared = prepare(params, tmp_path, tmp_path / "out")
    corpus = read_streams(Path(prepared.path), params)
    for split in SPLITS:
        names = corpus.documents.loc[corpus.documents["split"] == split, "document"]
        text = "".join(normalise((folder / n).read_text(), False) for n in names)
        assert corpus.vocabulary.decode(corpus.streams[split]).replace(UNKNOWN, "?") == "".join(
            c if c in corpus.vocabulary.symbols[1:] else "?" for c in text
        )
    assert (tmp_path / "out" / VOCAB_FILE).exists()
    assert prepared.characters["train"] > prepared.characters["test"] > 0


def test_the_vocabulary_round_trips_text():
    text = "Grüße, naïve café — 3 × 4 = 12\n\tdef f(x): return x\n"
    vocabulary = Vocabulary.from_text(text)
    assert vocabulary.symbols[0] == UNKNOWN
    assert vocabulary.decode(vocabulary.encode(text)) == text
    again = Vocabulary.from_dict(vocabulary.to_dict())
    assert again.symbols == vocabulary.symbols
    assert list(vocabulary.encode("zZ")) == [0, 0]  # unseen -> the unknown id


def test_rare_characters_map_to_unknown():
    vocabulary = Vocabulary.from_text("aaab", min_count=2)
    assert vocabulary.symbols == [UNKNOWN, "a"]
    assert list(vocabulary.encode("ab")) == [1, 0]


def test_normalisation_is_documented_behaviour():
    text = "\ufeffCafe\u0301  \r\nline\rtwo\x07end\n\n\n\n\nlast   "
    assert normalise(text, lowercase=False) == "Café\nline\ntwo end\n\nlast\n"
    assert normalise("ABC", lowercase=True) == "abc\n"
    assert normalise(" \n\t\n", lowercase=False) == ""


def test_characters_unseen_in_train_are_counted_and_reported(tmp_path: Path, caplog):
    folder = _write_corpus(tmp_path / "corpus", documents=12)
    params = _params(str(folder))
    # Every document gets one rare symbol: wherever the split puts them, held-out ones
    # contain characters train never saw.
    for index, path in enumerate(sorted(folder.iterdir())):
        path.write_text(path.read_text() + f"symbol {chr(0x2460 + index)}\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        prepared = prepare(params, tmp_path, tmp_path / "out")
    assert prepared.unknown["train"] == 0
    assert prepared.unknown["test"] >= 1 and prepared.unknown["validation"] >= 1
    assert "unseen in train map to the unknown symbol" in caplog.text
    assert prepared.stats["test_unknown"] == prepared.unknown["test"]


def test_a_non_utf8_file_is_named_with_its_byte_offset_and_line(tmp_path: Path):
    folder = _write_corpus(tmp_path / "corpus")
    (folder / "latin.txt").write_bytes(b"first line\nna\xefve caf\xe9\n")
    with pytest.raises(CorpusError) as error:
        prepare(_params(str(folder)), tmp_path, tmp_path / "out")
    message = str(error.value)
    assert "latin.txt" in message and "byte offset 13" in message and "line 2" in message
    assert "save the file as UTF-8" in message
    assert not (tmp_path / "out").exists()


def test_a_binary_file_is_named(tmp_path: Path):
    folder = _write_corpus(tmp_path / "corpus")
    (folder / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(CorpusError, match=r"image\.txt: binary file \(NUL byte at byte offset 8"):
        prepare(_params(str(folder)), tmp_path, tmp_path / "out")


def test_an_empty_corpus_is_refused(tmp_path: Path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for index in range(3):
        (folder / f"empty{index}.txt").write_text("  \n\n")
    with pytest.raises(CorpusError, match="the corpus is empty"):
        prepare(_params(str(folder)), tmp_path, tmp_path / "out")
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "notes.csv").write_text("a,b\n")
    with pytest.raises(CorpusError, match="no files ending in .txt, .md, .rst"):
        prepare(_params(str(tables)), tmp_path, tmp_path / "out")
    with pytest.raises(CorpusError, match="no such file or directory"):
        prepare(_params(str(folder / "missing")), tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_corpus_too_small_for_the_context_length_names_the_split(tmp_path: Path):
    folder = _write_corpus(tmp_path / "corpus", documents=6, words=20)
    with pytest.raises(CorpusError) as error:
        prepare(_params(str(folder), bptt=400), tmp_path, tmp_path / "out")
    message = str(error.value)
    assert "too small for text.train.bptt=400" in message and "train has" in message
    assert not (tmp_path / "out").exists()


def test_a_failed_prepare_leaves_the_previous_corpus_untouched(tmp_path: Path):
    folder = _write_corpus(tmp_path / "corpus")
    params = _params(str(folder))
    prepared = prepare(params, tmp_path, tmp_path / "out")
    before = (tmp_path / "out" / CORPUS_FILE).read_bytes()
    (folder / "broken.txt").write_bytes(b"\xff\xfe broken")
    with pytest.raises(CorpusError):
        prepare(params, tmp_path, tmp_path / "out")
    assert (tmp_path / "out" / CORPUS_FILE).read_bytes() == before
    assert prepared.md5


def test_too_few_documents_and_a_single_file_of_paragraphs(tmp_path: Path):
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "a.txt").write_text("one")
    (folder / "b.txt").write_text("two")
    with pytest.raises(CorpusError, match="needs at least 3"):
        prepare(_params(str(folder)), tmp_path, tmp_path / "out")
    single = tmp_path / "book.txt"
    single.write_text("\n\n".join(f"paragraph {i} " * 10 for i in range(30)))
    documents, source = read_documents(_params(str(single)).corpus, tmp_path)
    assert len(documents) == 30 and source == str(single)


def test_a_glob_names_the_documents(tmp_path: Path):
    folder = _write_corpus(tmp_path / "corpus")
    params = _params("corpus/doc0*.txt")
    documents, _ = read_documents(params.corpus, tmp_path)
    assert sorted(d.name for d in documents) == [f"doc0{i}.txt" for i in range(10)]
    assert all(d.text for d in documents) and folder.exists()


def test_impossible_values_name_their_key():
    with pytest.raises(ConfigError) as error:
        Params.from_dict(
            {
                "corpus": {"test_fraction": 0.7},
                "train": {"bptt": 0, "lstm": {"dropout": 1.5}},
                "evaluate": {"metric": "accuracy", "prompts": []},
            }
        )
    message = str(error.value)
    for key in ("corpus.test_fraction", "train.bptt", "train.lstm.dropout", "evaluate.metric"):
        assert key in message
    assert "evaluate.prompts" in message


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train": {"bptt": 0}}, "params.train.bptt must be at least 1, got 0"),
        ({"train": {"batch_size": 0}}, "params.train.batch_size must be at least 1, got 0"),
        ({"train": {"max_epochs": 0}}, "params.train.max_epochs must be at least 1, got 0"),
        ({"train": {"learning_rate": 0}}, "params.train.learning_rate must be above 0, got 0.0"),
        ({"train": {"gradient_clip": -1}}, "params.train.gradient_clip must be above 0"),
        ({"train": {"weight_decay": -0.1}}, "params.train.weight_decay must be at least 0"),
        (
            {"train": {"lstm": {"hidden_size": 0}}},
            "params.train.lstm.hidden_size must be at least 1",
        ),
        ({"corpus": {"seed": -1}}, "params.corpus.seed must be at least 0, got -1"),
        ({"evaluate": {"sample_length": 0}}, "params.evaluate.sample_length must be at least 1"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_allowed_range(values, message):
    with pytest.raises(ConfigError) as error:
        Params.from_dict(values)
    assert message in str(error.value)


def test_the_built_in_corpus_is_python_s_own_documentation():
    documents, source = read_documents(_params("python_docs").corpus, Path("."))
    assert "python_docs" in source and len(documents) > 50
    assert sum(len(d.text) for d in documents) > 300_000
    encoded = encode_corpus(documents, _params("python_docs").corpus)
    assert encoded.vocabulary.size < 200 and len(encoded.streams["test"]) > 20_000


def test_repeated_long_lines_are_dropped_so_boilerplate_cannot_leak_across_splits():
    header = "Copyright (c) the authors; all rights reserved worldwide."
    documents = [
        Document("a", f"{header}\nshort\nalpha text of the first document\n"),
        Document("b", f"{header}\nshort\nbeta text of the second one\n"),
    ]
    kept, dropped = drop_repeated_lines(documents, 30)
    assert kept[0].text == documents[0].text
    assert kept[1].text == "short\nbeta text of the second one\n"  # short lines stay
    assert dropped == len(header) + 1
    assert drop_repeated_lines(documents, 0) == (documents, 0)


def test_the_prepare_cache_key_follows_the_files_and_the_params(tmp_path: Path):
    folder = _write_corpus(tmp_path / "corpus")
    params = _params(str(folder))
    key = prepare_input_key(params, tmp_path)
    assert prepare_input_key(params, tmp_path) == key  # stable across calls
    (folder / "doc03.txt").write_text("a changed document\n", encoding="utf-8")
    changed = prepare_input_key(params, tmp_path)
    assert changed != key
    lowercase = params.model_copy(
        update={"corpus": params.corpus.model_copy(update={"lowercase": True})}
    )
    assert prepare_input_key(lowercase, tmp_path) != changed
    assert prepare_input_key(_params(str(folder), bptt=8), tmp_path) != changed
    builtin = _params("python_docs")
    assert prepare_input_key(builtin, tmp_path) == prepare_input_key(builtin, tmp_path)
