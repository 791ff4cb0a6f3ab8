"""The text family: a corpus -> character language models scored in bits per character."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from trainyard.errors import DataError
from trainyard.tasks.family import (
    INPUT_SUFFIXES,
    EvaluationResult,
    Family,
    PyfuncSpec,
    TrainingSetup,
    read_input_table,
)
from trainyard.tasks.prepared import decode_utf8
from trainyard.tasks.text import prepare as preparation
from trainyard.tasks.text.config import METRICS, MODEL_KINDS, PYTHON_DOCS, Params
from trainyard.tasks.text.corpus import check_sizes

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")  # files --dataset hands to this family


class TextFamily(Family):
    """Language models of one corpus; the gate metric is test bpc (lower wins)."""

    name = "text"
    section = Params
    registry_suffix = "lm"
    metrics = METRICS
    serving_requirements = ("pyarrow",)
    prepared_type = preparation.TextPrepared

    def label(self, params: Params) -> str:
        """Returns the corpus' short name, e.g. python-docs."""
        return params.corpus.label

    def model_kinds(self) -> list[str]:
        """Returns lstm."""
        return list(MODEL_KINDS)

    def dataset_values(self, values: dict[str, Any], dataset: str) -> dict[str, Any] | None:
        """Returns the text section reading `dataset` (a folder, glob or text file, or a
        built-in corpus), or None when it is a table for another family."""
        path = Path(dataset)
        is_text = (
            dataset == PYTHON_DOCS
            or any(char in dataset for char in "*?[")
            or path.is_dir()
            or path.suffix.lower() in TEXT_SUFFIXES
        )
        if not is_text:
            return None
        return {**values, "corpus": {**values.get("corpus", {}), "name": dataset}}

    def read_input(self, path: Path) -> pd.DataFrame:
        """Returns the prompts of a model input file: a .txt file with one prompt per line
        (empty lines skipped; a line's spaces are kept), or a table with a `prompt` column
        (a CSV's cells read as text, so "42" or "NA" stay prompts)."""
        from trainyard.tasks.text.serving import PROMPT_COLUMN

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in INPUT_SUFFIXES:
            return read_input_table(path, as_text=True)
        if suffix != ".txt":
            raise DataError(
                f"{path}: cannot read {suffix or 'a file without suffix'} as prompts; give a "
                f".txt file (one prompt per line) or a table with a {PROMPT_COLUMN!r} column "
                f"({', '.join(INPUT_SUFFIXES)})"
            )
        if not path.is_file():
            why = "is a folder" if path.is_dir() else "no such file"
            raise DataError(f"{path}: {why}; give a .txt file of prompts, one per line")
        lines = (line.removesuffix("\r") for line in decode_utf8(path).split("\n"))
        prompts = [line for line in lines if line]
        if not prompts:
            raise DataError(f"{path}: no prompts; write one prompt per line")
        return pd.DataFrame({PROMPT_COLUMN: prompts})

    # Reads, normalises, splits and encodes the corpus; cached by a hash of the corpus files,
    # the corpus params and the prepare code.
    prepare = staticmethod(preparation.prepare)
    prepare_key = staticmethod(preparation.prepare_input_key)

    def prepared(self, params: Params, out_dir: Path) -> preparation.TextPrepared:
        """Returns the summary of the prepared corpus in out_dir (checked against params)."""
        return preparation.summary_of(out_dir / preparation.CORPUS_FILE, params)

    def setup(self, name: str, prepared_path: Path, params: Params) -> TrainingSetup:
        """Returns language model `name` with truncated-BPTT loaders over train and
        validation."""
        from trainyard.models.text.lstm_lm import LSTMLanguageModel
        from trainyard.tasks.text.batches import bptt_loader

        corpus = preparation.read_streams(prepared_path, params)
        train = params.train
        lengths = {split: len(stream) for split, stream in corpus.streams.items()}
        check_sizes(lengths, train.batch_size, train.bptt, str(prepared_path))
        validation = corpus.streams["validation"]
        validation_rows = max(1, min(train.batch_size, len(validation) // (train.bptt + 1)))
        hparams = {
            "vocab_size": corpus.vocabulary.size,
            **params.train.lstm.model_dump(),
            "learning_rate": train.learning_rate,
            "weight_decay": train.weight_decay,
        }
        return TrainingSetup(
            module=LSTMLanguageModel(**hparams),
            train_loader=bptt_loader(corpus.streams["train"], train.batch_size, train.bptt),
            val_loader=bptt_loader(validation, validation_rows, train.bptt),
            hparams={**hparams, "batch_size": train.batch_size, "bptt": train.bptt},
            monitor="val/bpc",
            mode="min",
            gradient_clip=train.gradient_clip,
        )

    def evaluate(
        self,
        prepared: preparation.TextPrepared,
        model_dirs: dict[str, Path],
        params: Params,
        report_dir: Path,
        histories: dict[str, list[dict[str, float]]],
    ) -> EvaluationResult:
        """Returns test-split scores of every model and baseline; writes the reports."""
        from trainyard.tasks.text.evaluate import evaluate

        return evaluate(Path(prepared.path), model_dirs, params, report_dir, histories)

    def evaluation_key(self, prepared: preparation.TextPrepared, params: Params) -> str:
        """Returns a hash naming the test split: the data version."""
        return hashlib.sha256(f"{prepared.md5}|test".encode()).hexdigest()[:12]

    def dataset_frame(self, prepared: preparation.TextPrepared) -> tuple[pd.DataFrame, None]:
        """Returns the documents table (name, split, characters, unknown)."""
        frame, meta = preparation.read_prepared_table(Path(prepared.path), "text")
        return pd.DataFrame(meta["documents"]), None

    def pyfunc(
        self, name: str, model_dir: Path, prepared: preparation.TextPrepared, params: Params
    ) -> PyfuncSpec:
        """Returns language model `name` as a pyfunc: prompts in, continuations out."""
        from trainyard.tasks.text.serving import DEFAULT_PARAMS, PROMPT_COLUMN, TextGenerator

        corpus = preparation.read_streams(Path(prepared.path), params)
        evaluate = params.evaluate
        example_params = {
            **DEFAULT_PARAMS,
            "temperature": evaluate.temperature,
            "length": evaluate.sample_length,
        }
        example = pd.DataFrame({PROMPT_COLUMN: evaluate.prompts[:2]})
        return PyfuncSpec(
            python_model=TextGenerator,
            artifacts={"model_dir": str(model_dir)},
            model_config={
                "kind": name,
                "vocabulary": corpus.vocabulary.to_dict(),
                "params": params.to_dict(),
            },
            input_example=(example, example_params),
        )

    def rescore(
        self,
        model_config: dict[str, Any],
        artifacts: dict[str, Path],
        prepared: preparation.TextPrepared,
        params: Params,
    ) -> float | None:
        """Returns a registered model's test bpc on this run's test split, or None when it
        was trained with another vocabulary (its ids mean other characters)."""
        from trainyard.tasks.text.evaluate import rescore

        corpus = preparation.read_streams(Path(prepared.path), params)
        if model_config.get("vocabulary") != corpus.vocabulary.to_dict():
            return None
        kind = model_config["kind"]
        return rescore(kind, artifacts["model_dir"], Path(prepared.path), params)


TEXT = TextFamily()
