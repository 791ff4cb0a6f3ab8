"""Text evaluate step: every language model and the n-gram baselines on the test split.

Per model: bits per character (bpc) and per-character perplexity (2 ** bpc) over test positions
1..N-1, each predicted from everything before it in the test stream. Baselines: the
interpolated Kneser-Ney n-gram (order chosen on validation) and its unigram. Reports:
metrics.json, ngram_orders.csv, samples.txt/json from fixed prompts, learning curves, a bpc chart.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainyard.errors import DataError
from trainyard.tasks.family import CHECKPOINT, EvaluationResult, load_checkpoint
from trainyard.tasks.text.config import METRICS, Params
from trainyard.tasks.text.corpus import Vocabulary
from trainyard.tasks.text.prepare import CorpusStreams, read_streams

METRICS_FILE = "metrics.json"
ORDERS_FILE = "ngram_orders.csv"
CURVES_FILE = "learning_curves.csv"
SAMPLES_FILE = "samples.txt"
COLUMNS = ["bpc", "perplexity", "val_bpc"]
# Model kind -> "module:class" of its LightningModule (imported when used).
LANGUAGE_MODELS = {"lstm": "trainyard.models.text.lstm_lm:LSTMLanguageModel"}


def load_language_model(kind: str, model_dir: Path) -> Any:
    """Returns the language model stored in model_dir, loaded as weights only, in eval mode."""
    module, name = LANGUAGE_MODELS[kind].split(":")
    model_class = getattr(importlib.import_module(module), name)
    model = load_checkpoint(model_class, model_dir, kind, "text")
    model.eval()
    return model


def scores_of(log2_probs: np.ndarray) -> dict[str, float]:
    """Returns bpc and per-character perplexity from per-position log2 probabilities."""
    bpc = float(-np.mean(log2_probs))
    return {"bpc": bpc, "perplexity": float(2.0**bpc)}


def check_vocabulary(model: Any, vocabulary: Vocabulary, source: str) -> None:
    """Raises DataError when a model was trained for another vocabulary size."""
    if int(model.hparams.vocab_size) != vocabulary.size:
        raise DataError(
            f"{source}: the model has {model.hparams.vocab_size} symbols, the prepared corpus "
            f"{vocabulary.size}; train it again on this corpus"
        )


def sample_text(
    next_distribution: Any, vocabulary: Vocabulary, prompt: str, length: int, params: Params
) -> str:
    """Returns `length` characters sampled after prompt from a context -> distribution
    function (the n-gram's), at the evaluate temperature and seed."""
    rng = np.random.default_rng(params.evaluate.sample_seed)
    context = list(vocabulary.encode(prompt))
    out = []
    for _ in range(length):
        probs = next_distribution(context)
        if params.evaluate.temperature == 0:
            token = int(np.argmax(probs))
        else:
            logits = np.log(np.maximum(probs, 1e-300)) / params.evaluate.temperature
            weights = np.exp(logits - logits.max())
            token = int(rng.choice(len(weights), p=weights / weights.sum()))
        context.append(token)
        out.append(token)
    return vocabulary.decode(out)


def continue_prompt(
    model: Any, vocabulary: Vocabulary, prompt: str, length: int, temperature: float, seed: int
) -> str:
    """Returns `length` characters the language model writes after prompt."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = model.generate(list(vocabulary.encode(prompt)), length, temperature, generator)
    return vocabulary.decode(ids)


def _plot_bpc(scores: dict[str, dict[str, float]], path: Path) -> Path:
    from trainyard.tasks.reports import plt, save_figure

    names = sorted(scores, key=lambda n: scores[n]["bpc"])
    figure, axis = plt.subplots(figsize=(1.2 * len(names) + 2, 3.4))
    axis.bar(names, [scores[n]["bpc"] for n in names], color="#4c72b0")
    axis.set_ylabel("test bits per character (lower is better)")
    axis.set_title("Test split: bits per character")
    return save_figure(figure, path)


def _plot_orders(orders: pd.DataFrame, path: Path) -> Path:
    from trainyard.tasks.reports import plt, save_figure

    figure, axis = plt.subplots(figsize=(4.5, 3.4))
    axis.plot(orders["order"], orders["validation_bpc"], marker="o")
    axis.set_xlabel("n-gram order")
    axis.set_ylabel("validation bpc")
    axis.set_title("Kneser-Ney order chosen on validation")
    return save_figure(figure, path)


def ngram_baselines(corpus: CorpusStreams, params: Params) -> tuple[dict[str, Any], pd.DataFrame]:
    """Returns the fitted baselines by name (the chosen-order n-gram and the unigram) and the
    validation bpc of every order tried."""
    from trainyard.tasks.text.ngram import KneserNeyLM, choose_order

    streams, size = corpus.streams, corpus.vocabulary.size
    best, by_order = choose_order(
        streams["train"], streams["validation"], size, params.evaluate.max_ngram_order
    )
    orders = pd.DataFrame({"order": list(by_order), "validation_bpc": list(by_order.values())})
    models = {"ngram": best}
    if best.order != 1:
        models["unigram"] = KneserNeyLM.fit(streams["train"], 1, size)
    return models, orders


def evaluate(
    prepared_path: Path,
    model_dirs: dict[str, Path],
    params: Params,
    report_dir: Path,
    histories: dict[str, list[dict[str, float]]] | None = None,
) -> EvaluationResult:
    """Returns test-split scores of the models in `model_dirs` and the baselines, and writes
    metrics.json, ngram_orders.csv, samples, learning_curves.csv and plots/ to report_dir."""
    from trainyard.tasks.reports import learning_curves, plot_learning_curves, staged_reports

    corpus = read_streams(prepared_path, params)
    test, validation, vocabulary = (
        corpus.streams["test"],
        corpus.streams["validation"],
        corpus.vocabulary,
    )
    baselines, orders = ngram_baselines(corpus, params)
    scores: dict[str, dict[str, float]] = {}
    for name, ngram in baselines.items():
        scores[name] = {
            **scores_of(ngram.log2_probs(test)),
            "val_bpc": float(ngram.bits_per_char(validation)),
            "order": float(ngram.order),
        }
    models = {name: load_language_model(name, Path(d)) for name, d in model_dirs.items()}
    for name, model in models.items():
        check_vocabulary(model, vocabulary, str(Path(model_dirs[name]) / CHECKPOINT))
        scores[name] = {
            **scores_of(model.log2_probs(test)),
            "val_bpc": scores_of(model.log2_probs(validation))["bpc"],
        }
    evaluate_params = params.evaluate
    samples: dict[str, dict[str, str]] = {}
    for prompt in evaluate_params.prompts:
        length, temperature = evaluate_params.sample_length, evaluate_params.temperature
        samples[prompt] = {
            name: continue_prompt(
                model, vocabulary, prompt, length, temperature, evaluate_params.sample_seed
            )
            for name, model in models.items()
        }
        samples[prompt]["ngram"] = sample_text(
            baselines["ngram"].distribution, vocabulary, prompt, length, params
        )
    with staged_reports(report_dir) as work:
        (work / METRICS_FILE).write_text(json.dumps(scores, indent=2, sort_keys=True))
        orders.to_csv(work / ORDERS_FILE, index=False)
        (work / "samples.json").write_text(json.dumps(samples, indent=2, ensure_ascii=False))
        text = [f"temperature {evaluate_params.temperature}, seed {evaluate_params.sample_seed}\n"]
        for prompt, by_model in samples.items():
            for name, continuation in by_model.items():
                text.append(f"--- {name} | prompt {prompt!r}\n{prompt}{continuation}\n")
        (work / SAMPLES_FILE).write_text("\n".join(text), encoding="utf-8")
        curves = learning_curves(histories or {})
        curves.to_csv(work / CURVES_FILE, index=False)
        plots_dir = work / "plots"
        plots_dir.mkdir()
        plots = [
            _plot_bpc(scores, plots_dir / "bpc.png"),
            _plot_orders(orders, plots_dir / "ngram_orders.png"),
        ]
        if not curves.empty:
            columns = ["train/bpc", "val/bpc"]
            plots.append(plot_learning_curves(curves, plots_dir, columns, log_scale=False))
    return EvaluationResult(
        metrics=scores,
        baselines=list(baselines),
        report_dir=str(report_dir),
        title=(
            f"Test split: {len(test):,} characters in "
            f"{int((corpus.documents['split'] == 'test').sum())} documents of {corpus.source}"
        ),
        columns=COLUMNS,
        higher_is_better={**METRICS, "val_bpc": False},
        plots=[str(report_dir / "plots" / Path(p).name) for p in plots],
    )


def rescore(kind: str, model_dir: Path, prepared_path: Path, params: Params) -> float:
    """Returns language model `kind`'s gate metric on the test split at prepared_path."""
    corpus = read_streams(prepared_path, params)
    model = load_language_model(kind, model_dir)
    check_vocabulary(model, corpus.vocabulary, str(Path(model_dir) / CHECKPOINT))
    return scores_of(model.log2_probs(corpus.streams["test"]))[params.evaluate.metric]
