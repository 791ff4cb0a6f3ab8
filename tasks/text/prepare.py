"""Text prepare step: the corpus normalised, split by document, encoded, with its vocabulary.

data/text/prepared/corpus.parquet holds one row per character: its document's index and its
token id; the metadata holds the vocabulary and the documents (name, split, size, unknown
characters). vocab.json beside it is the same vocabulary, for people and for serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trainyard.errors import DataError
from trainyard.tasks.family import Prepared
from trainyard.tasks.prepared import check_prepared_with, file_md5, write_table
from trainyard.tasks.prepared import read_table as read_prepared_table
from trainyard.tasks.text.config import Params
from trainyard.tasks.text.corpus import (
    BUILTIN_CORPORA,
    SPLITS,
    EncodedCorpus,
    Vocabulary,
    check_sizes,
    corpus_files,
    encode_corpus,
    read_documents,
)

log = logging.getLogger(__name__)

CORPUS_FILE = "corpus.parquet"
VOCAB_FILE = "vocab.json"


@dataclass
class TextPrepared(Prepared):
    """What the text prepare step wrote."""

    vocab_size: int = 0  # ids, the unknown symbol included
    characters: dict[str, int] = field(default_factory=dict)  # split -> characters
    documents: dict[str, int] = field(default_factory=dict)  # split -> documents
    unknown: dict[str, int] = field(default_factory=dict)  # split -> unknown characters

    def __post_init__(self) -> None:
        self.stats = {
            "vocab_size": self.vocab_size,
            **{f"{split}_characters": n for split, n in self.characters.items()},
            **{f"{split}_unknown": n for split, n in self.unknown.items()},
        }
        sizes = ", ".join(
            f"{split} {self.characters.get(split, 0):,} chars / {self.documents.get(split, 0)} docs"
            for split in SPLITS
        )
        self.description = (
            f"{self.source}: {sizes}; {self.vocab_size} symbols (version {self.md5[:12]})"
        )


def unknown_report(encoded: EncodedCorpus) -> list[str]:
    """Returns one line per held-out split with characters unseen in train."""
    lines = []
    for split in ("validation", "test"):
        unseen = encoded.unknown.get(split, {})
        if unseen:
            shown = ", ".join(f"{char!r} x{count}" for char, count in list(unseen.items())[:8])
            lines.append(
                f"{split}: {sum(unseen.values())} character(s) unseen in train map to the "
                f"unknown symbol ({shown}{' ...' if len(unseen) > 8 else ''})"
            )
    return lines


def prepare(params: Params, root: Path, out_dir: Path) -> TextPrepared:
    """Returns a summary after writing the encoded corpus and its vocabulary."""
    documents, source = read_documents(params.corpus, root)
    encoded = encode_corpus(documents, params.corpus)
    lengths = {split: len(stream) for split, stream in encoded.streams.items()}
    check_sizes(lengths, params.train.batch_size, params.train.bptt, source)
    names = [row["document"] for row in encoded.documents]
    frame = pd.DataFrame(
        {
            "document": np.repeat(
                np.arange(len(names), dtype=np.int32),
                [row["characters"] for row in encoded.documents],
            ),
            "token": np.concatenate([encoded.streams[split] for split in SPLITS]),
        }
    )
    meta = {
        "corpus": params.corpus.model_dump(),
        "source": source,
        "vocabulary": encoded.vocabulary.to_dict(),
        "documents": encoded.documents,
        "skipped_documents": encoded.skipped,
        "repeated_characters": encoded.repeated,
    }
    for line in unknown_report(encoded):
        log.warning("%s", line)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(frame, meta, out_dir / CORPUS_FILE)
    vocab = json.dumps(encoded.vocabulary.to_dict(), ensure_ascii=False, indent=1)
    (out_dir / VOCAB_FILE).write_text(vocab + "\n", encoding="utf-8")
    log.info("prepared %s", source)
    return summary_of(out_dir / CORPUS_FILE, params)


@dataclass
class CorpusStreams:
    """A prepared corpus read back: the vocabulary and each split's token stream."""

    vocabulary: Vocabulary
    streams: dict[str, np.ndarray]
    documents: pd.DataFrame  # document, split, characters, unknown
    source: str


def read_streams(path: Path, params: Params) -> CorpusStreams:
    """Returns the prepared corpus at path, checked against the corpus params."""
    frame, meta = read_prepared_table(path, "text")
    check_prepared_with(meta, {"corpus": params.corpus.model_dump()}, path, "text")
    documents = pd.DataFrame(meta["documents"])
    tokens = frame["token"].to_numpy(dtype=np.int32)
    vocabulary = Vocabulary.from_dict(meta["vocabulary"])
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= vocabulary.size):
        raise DataError(f"{path}: token ids outside the vocabulary; run prepare again")
    split_of = documents["split"].to_numpy()[frame["document"].to_numpy()]
    streams = {split: tokens[split_of == split] for split in SPLITS}
    return CorpusStreams(vocabulary, streams, documents, meta["source"])


def summary_of(path: Path, params: Params) -> TextPrepared:
    """Returns the summary of a prepared corpus file, checked against the corpus params."""
    corpus = read_streams(path, params)
    by_split = corpus.documents.groupby("split")
    return TextPrepared(
        path=str(path),
        md5=file_md5(path),
        source=corpus.source,
        vocab_size=corpus.vocabulary.size,
        characters={split: int(len(corpus.streams[split])) for split in SPLITS},
        documents={split: int(by_split.size().get(split, 0)) for split in SPLITS},
        unknown={split: int((corpus.streams[split] == 0).sum()) for split in SPLITS},
    )


def prepare_input_key(params: Params, root: Path) -> str:
    """Returns a hash of what prepare reads: the corpus files (or built-in name), the corpus
    params, the sizes it checks, and the prepare code."""
    from trainyard.tasks.text import corpus

    digest = hashlib.sha256()
    if params.corpus.name in BUILTIN_CORPORA:
        for document in BUILTIN_CORPORA[params.corpus.name]():
            digest.update(f"{document.name}\0{document.text}\0".encode())
    else:
        files, base = corpus_files(params.corpus, root)
        for file in files:
            digest.update(f"{file.relative_to(base)}:{file_md5(file)}".encode())
    code = "".join(file_md5(Path(module.__file__)) for module in (corpus, sys.modules[__name__]))
    sizes = f"{params.train.batch_size}|{params.train.bptt}"
    digest.update(f"{params.section_hash('corpus')}|{sizes}|{code}".encode())
    return digest.hexdigest()[:16]
