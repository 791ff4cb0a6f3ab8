"""Text corpora: read documents (built-in or a user's files), normalise, split, encode.

Normalisation (docs/data.md): a UTF-8 byte-order mark is dropped; Unicode NFC; CRLF and CR
become LF; other control characters (except tab) become a space; trailing spaces are cut from
every line; runs of three or more newlines become two; optional lowercasing; every document
ends with one newline. Documents that are empty after this are skipped and counted.

Repeated lines are dropped before splitting: a line of at least corpus.dedupe_min_chars
characters that already appeared (in this or an earlier document, in source order) is removed,
so boilerplate shared by documents cannot leak from train into validation and test.

Splits are made of whole documents: documents are shuffled with corpus.seed and dealt to
validation until it holds validation_fraction of the characters, then to test, the rest to
train. The character vocabulary comes from train only; id 0 is the unknown symbol that
characters unseen in train (or rarer than min_char_count) map to.
"""

from __future__ import annotations

import glob
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainyard.errors import DataError
from trainyard.tasks.prepared import decode_utf8
from trainyard.tasks.text.config import PYTHON_DOCS, CorpusConfig

SPLITS = ("train", "validation", "test")
UNKNOWN = "\ufffd"  # how the unknown symbol (id 0) is shown when decoding
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")


class CorpusError(DataError):
    """The corpus cannot be read, or is too small for the configured splits."""


@dataclass
class Document:
    """One document: where it came from and its normalised text."""

    name: str  # file path relative to the corpus root, or the built-in topic
    text: str


def python_docs() -> list[Document]:
    """Returns Python's own reference topics (pydoc_data, shipped with CPython: ~465k
    characters of English prose and code in 79 documents)."""
    from pydoc_data.topics import topics

    return [Document(name, text) for name, text in sorted(topics.items())]


BUILTIN_CORPORA = {PYTHON_DOCS: python_docs}


def decode_file(path: Path) -> str:
    """Returns a file's text, raising CorpusError naming the file, byte offset and line when it
    is binary or not UTF-8."""
    try:
        return decode_utf8(path)
    except DataError as error:
        raise CorpusError(str(error)) from None


def corpus_files(config: CorpusConfig, root: Path) -> tuple[list[Path], Path]:
    """Returns the files corpus.name names (a directory, glob or file) and their common root."""
    name = config.name
    if any(char in name for char in "*?["):
        pattern = name if Path(name).is_absolute() else str(root / name)
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        base = Path(pattern.split("*")[0].split("?")[0].split("[")[0])
        base = base if base.is_dir() else base.parent
        if not files:
            raise CorpusError(f"{pattern}: the glob matches no files; check corpus.name")
        return files, base
    path = Path(name) if Path(name).is_absolute() else root / name
    if path.is_dir():
        suffixes = {suffix.lower() for suffix in config.extensions}
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise CorpusError(
                f"{path}: no files ending in {', '.join(config.extensions)}; add text files or "
                "set corpus.extensions"
            )
        return files, path
    if path.is_file():
        return [path], path.parent
    raise CorpusError(
        f"{path}: no such file or directory, and {name!r} is not a built-in corpus "
        f"({', '.join(BUILTIN_CORPORA)}); set corpus.name (or --dataset) to a folder of text "
        "files, a glob or a built-in name"
    )


def read_documents(config: CorpusConfig, root: Path) -> tuple[list[Document], str]:
    """Returns the raw documents corpus.name names and a description of the source.

    A folder or glob gives one document per file; a single file gives one document per
    paragraph block (blank-line separated), so it can still be split by document."""
    if config.name in BUILTIN_CORPORA:
        return BUILTIN_CORPORA[config.name](), f"built-in corpus {config.name!r}"
    files, base = corpus_files(config, root)
    if len(files) == 1:
        text = decode_file(files[0])
        blocks = [block for block in re.split(r"\n\s*\n", text) if block.strip()]
        documents = [Document(f"{files[0].name}#{i}", block) for i, block in enumerate(blocks)]
        return documents, str(files[0])
    documents = [Document(str(file.relative_to(base)), decode_file(file)) for file in files]
    return documents, f"{base} ({len(files)} files)"


def normalise(text: str, lowercase: bool) -> str:
    """Returns text normalised as the module docstring says."""
    text = unicodedata.normalize("NFC", text.lstrip("\ufeff"))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    text = _TRAILING_SPACE.sub("\n", text + "\n")
    text = _BLANK_RUNS.sub("\n\n", text).strip("\n")
    if lowercase:
        text = text.lower()
    return text + "\n" if text.strip() else ""


def drop_repeated_lines(documents: list[Document], min_chars: int) -> tuple[list[Document], int]:
    """Returns documents without lines (>= min_chars long) seen before, and the characters
    dropped; min_chars 0 keeps everything."""
    if min_chars <= 0:
        return documents, 0
    seen: set[str] = set()
    kept, dropped = [], 0
    for doc in documents:
        lines = []
        for line in doc.text.split("\n"):
            if len(line) >= min_chars and line in seen:
                dropped += len(line) + 1
                continue
            seen.add(line)
            lines.append(line)
        kept.append(Document(doc.name, _BLANK_RUNS.sub("\n\n", "\n".join(lines))))
    return kept, dropped


def split_documents(documents: list[Document], config: CorpusConfig) -> dict[str, list[Document]]:
    """Returns documents dealt to train/validation/test as whole documents (reproducible)."""
    if len(documents) < 3:
        raise CorpusError(
            f"the corpus has {len(documents)} non-empty document(s); splitting by document "
            "needs at least 3 (one each for train, validation and test): add files"
        )
    shuffled = [
        documents[i] for i in np.random.default_rng(config.seed).permutation(len(documents))
    ]
    total = sum(len(doc.text) for doc in documents)
    splits: dict[str, list[Document]] = {split: [] for split in SPLITS}
    free, remaining = [True] * len(shuffled), len(shuffled)  # not yet dealt
    # Validation, then test, take documents in shuffled order while they fit in their share of
    # the characters (the smallest one when none fits); train keeps at least one document.
    for split, keep_back in (("validation", 2), ("test", 1)):
        target, size = getattr(config, f"{split}_fraction") * total, 0
        for index, doc in enumerate(shuffled):
            if remaining <= keep_back:
                break
            if free[index] and size + len(doc.text) <= target:
                splits[split].append(doc)
                free[index], remaining = False, remaining - 1
                size += len(doc.text)
        if not splits[split]:
            index = min(
                (i for i in range(len(shuffled)) if free[i]), key=lambda i: len(shuffled[i].text)
            )
            splits[split].append(shuffled[index])
            free[index], remaining = False, remaining - 1
    splits["train"] = [doc for doc, is_free in zip(shuffled, free, strict=True) if is_free]
    return splits


@dataclass
class Vocabulary:
    """Characters <-> ids; id 0 is the unknown symbol."""

    symbols: list[str]  # symbols[i] is the character of id i; symbols[0] == UNKNOWN

    @classmethod
    def from_text(cls, text: str, min_count: int = 1) -> Vocabulary:
        """Returns the vocabulary of characters seen at least min_count times in text."""
        counts = Counter(text)
        kept = sorted(char for char, count in counts.items() if count >= min_count)
        return cls([UNKNOWN, *[char for char in kept if char != UNKNOWN]])

    @property
    def size(self) -> int:
        """Returns the number of ids, the unknown symbol included."""
        return len(self.symbols)

    def encode(self, text: str) -> np.ndarray:
        """Returns int32 ids of text's characters (unknown ones -> 0)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        known = np.array([ord(char) for char in self.symbols[1:]], dtype=np.uint32)
        if not len(known):
            return np.zeros(len(codes), dtype=np.int32)
        order = np.argsort(known)
        position = np.searchsorted(known[order], codes).clip(0, len(known) - 1)
        hit = known[order][position] == codes
        return np.where(hit, order[position] + 1, 0).astype(np.int32)

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Returns the text of ids (the unknown symbol shown as U+FFFD)."""
        return "".join(self.symbols[int(i)] for i in ids)

    def to_dict(self) -> dict[str, object]:
        """Returns the vocabulary as JSON-able data."""
        return {"unknown_id": 0, "symbols": self.symbols}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Vocabulary:
        """Returns the vocabulary to_dict described."""
        symbols = list(data["symbols"])  # type: ignore[arg-type]
        if not symbols or symbols[0] != UNKNOWN:
            raise DataError("vocabulary: symbol 0 must be the unknown symbol U+FFFD")
        return cls(symbols)


@dataclass
class EncodedCorpus:
    """A corpus split, normalised and encoded."""

    vocabulary: Vocabulary
    streams: dict[str, np.ndarray]  # split -> int32 ids of its documents, concatenated
    documents: list[dict[str, object]]  # name, split, characters, unknown per document
    unknown: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> char -> count
    skipped: int = 0  # documents empty after normalisation
    repeated: int = 0  # characters of repeated lines dropped


def encode_corpus(documents: list[Document], config: CorpusConfig) -> EncodedCorpus:
    """Returns documents normalised, split by document, with a train vocabulary, encoded."""
    normalised = [Document(doc.name, normalise(doc.text, config.lowercase)) for doc in documents]
    normalised, repeated = drop_repeated_lines(normalised, config.dedupe_min_chars)
    kept = [doc for doc in normalised if doc.text.strip()]
    dropped = (
        f" (after dropping {repeated:,} characters of repeated lines: set "
        "corpus.dedupe_min_chars to 0 to keep them)"
        if repeated
        else ""
    )
    if not kept:
        raise CorpusError(
            f"the corpus is empty: no document has any text after normalisation{dropped}; point "
            "corpus.name at files with text"
        )
    try:
        splits = split_documents(kept, config)
    except CorpusError as error:
        raise CorpusError(f"{error}{dropped}") from None
    vocabulary = Vocabulary.from_text(
        "".join(doc.text for doc in splits["train"]), config.min_char_count
    )
    known = set(vocabulary.symbols[1:])
    streams, rows, unknown = {}, [], {}
    for split in SPLITS:
        ids = [vocabulary.encode(doc.text) for doc in splits[split]]
        streams[split] = np.concatenate(ids).astype(np.int32)
        unseen = Counter(char for doc in splits[split] for char in doc.text if char not in known)
        unknown[split] = dict(unseen.most_common())
        for doc, encoded in zip(splits[split], ids, strict=True):
            rows.append(
                {
                    "document": doc.name,
                    "split": split,
                    "characters": len(encoded),
                    "unknown": int((encoded == 0).sum()),
                }
            )
    skipped = len(normalised) - len(kept)
    return EncodedCorpus(vocabulary, streams, rows, unknown, skipped, repeated)


def check_sizes(lengths: dict[str, int], batch_size: int, bptt: int, source: str) -> None:
    """Raises CorpusError when a split is too short for the context length and batch size."""
    need = {"train": batch_size * (bptt + 1), "validation": bptt + 1, "test": bptt + 1}
    short = [
        f"{split} has {lengths.get(split, 0)} characters, needs at least {need[split]}"
        for split in SPLITS
        if lengths.get(split, 0) < need[split]
    ]
    if short:
        raise CorpusError(
            f"{source}: the corpus is too small for text.train.bptt={bptt} and "
            f"batch_size={batch_size}: {'; '.join(short)}. Add text, or lower bptt / "
            "batch_size (train needs batch_size x (bptt + 1) characters)"
        )
