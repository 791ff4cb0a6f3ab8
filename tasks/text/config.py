"""The `text:` section of params.yaml, typed: corpus, train, evaluate."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field

from trainyard.config import (
    EvaluateBase,
    FamilySection,
    Flag,
    Number,
    Section,
    Text,
    TextList,
    TrainBase,
    WholeNumber,
    outside,
    too_small,
)

SECTION = "text"
MODEL_KINDS = ("lstm",)  # the language models train.models can name
# Test-split metrics -> higher is better.
METRICS = {"bpc": False, "perplexity": False}
PYTHON_DOCS = "python_docs"
DEFAULT_PROMPTS = ["The ", "def ", "A list ", "If the "]


class CorpusConfig(Section):
    """Which text, how it is normalised and split into train/validation/test documents."""

    name: Text = PYTHON_DOCS  # built-in corpus, or a directory / glob / file of UTF-8 text
    extensions: TextList = Field(default_factory=lambda: [".txt", ".md", ".rst"])  # dir files
    lowercase: Flag = False  # fold case after normalisation
    min_char_count: WholeNumber = 1  # rarer characters in train map to the unknown symbol
    dedupe_min_chars: WholeNumber = 30  # a line this long that repeats an earlier one is dropped
    validation_fraction: Number = 0.1  # share of characters (whole documents) for validation
    test_fraction: Number = 0.1  # share of characters (whole documents) for test
    seed: WholeNumber = 7  # shuffles documents before they are dealt to splits

    @property
    def label(self) -> str:
        """Returns the corpus' short name: python-docs, or the folder's/file's name."""
        if self.name == PYTHON_DOCS:
            return "python-docs"
        stem = Path(Path(self.name.split("*")[0].rstrip("/")).name).stem
        return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "corpus"


class LSTMSection(Section):
    """LSTM language model: embedding -> LSTM layers -> output layer (tied when sizes allow)."""

    embedding_size: WholeNumber = 128  # character embedding width
    hidden_size: WholeNumber = 128  # LSTM units per layer
    num_layers: WholeNumber = 2  # stacked LSTM layers
    dropout: Number = 0.1  # dropout on embeddings, between layers and before the output
    tie_weights: Flag = True  # share embedding and output weights when the sizes match


class TrainConfig(TrainBase):
    """What to train and for how long (an epoch is one pass over the train split)."""

    models: TextList = Field(default_factory=lambda: list(MODEL_KINDS))
    max_epochs: WholeNumber = 6  # upper bound; early stopping on val/bpc may end sooner
    patience: WholeNumber = 2  # epochs without a lower val/bpc before stopping
    batch_size: WholeNumber = 64  # parallel streams the train split is laid out in
    bptt: WholeNumber = 100  # context length: characters per truncated-BPTT segment
    learning_rate: Number = 0.003  # Adam step size
    weight_decay: Number = 0.0  # AdamW weight decay
    gradient_clip: Number = 1.0  # max gradient norm
    lstm: LSTMSection = Field(default_factory=LSTMSection)


class EvaluateConfig(EvaluateBase):
    """How models and the n-gram baseline are scored on the test split, and samples."""

    metric: Text = "bpc"  # the gate metric: bits per character on test (lower wins)
    max_ngram_order: WholeNumber = 8  # the n-gram's order is chosen on validation, 1..this
    prompts: TextList = Field(default_factory=lambda: list(DEFAULT_PROMPTS))  # sample prompts
    sample_length: WholeNumber = 200  # characters generated per prompt
    temperature: Number = 0.8  # sampling temperature of the logged samples
    sample_seed: WholeNumber = 0  # seeds the logged samples


class Params(FamilySection):
    """The whole `text:` section."""

    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)

    section_name = SECTION

    def problems(self) -> list[str]:
        """Returns what is wrong with values whatever the corpus (empty when nothing is)."""
        corpus, train, lstm = self.corpus, self.train, self.train.lstm
        problems = train.common_problems()
        for name in ("validation_fraction", "test_fraction"):
            if not 0 < getattr(corpus, name) < 0.5:
                problems.append(
                    f"corpus.{name} must be above 0 and below 0.5, got {getattr(corpus, name)}"
                )
        problems += too_small(corpus, "corpus", 1, "min_char_count")
        if corpus.dedupe_min_chars < 0:
            problems.append("corpus.dedupe_min_chars must be 0 (keep every line) or more")
        problems += too_small(corpus, "corpus", 0, "seed")
        problems += too_small(train, "train", 1, "batch_size", "bptt")
        for name in ("learning_rate", "gradient_clip"):
            if getattr(train, name) <= 0:
                problems.append(f"train.{name} must be above 0, got {getattr(train, name)}")
        problems += too_small(train, "train", 0, "weight_decay")
        problems += too_small(lstm, "train.lstm", 1, "embedding_size", "hidden_size", "num_layers")
        problems += outside(lstm, "train.lstm", "dropout", 0, 1, open_high=True)
        evaluate = self.evaluate
        if evaluate.metric not in METRICS:
            problems.append(f"evaluate.metric must be one of {', '.join(METRICS)}")
        problems += too_small(evaluate, "evaluate", 1, "max_ngram_order", "sample_length")
        if evaluate.temperature < 0:
            problems.append("evaluate.temperature must be 0 (greedy) or more")
        problems += too_small(evaluate, "evaluate", 0, "sample_seed")
        if not evaluate.prompts or any(not prompt for prompt in evaluate.prompts):
            problems.append("evaluate.prompts must list non-empty prompts")
        return problems


load_params = Params.load
params_from_dict = Params.from_dict
