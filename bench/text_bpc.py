"""Benchmark: the LSTM language model against the Kneser-Ney n-gram on the same test split.

Runs the text family's own steps (prepare, train in a child process exactly as the pipeline
does, evaluate) with params.yaml's text section and an optional profile, in a scratch project
folder, and prints test bits per character of every model and baseline with the ratio
LSTM bpc / n-gram bpc (target <= 0.90) and the training time.

    python bench/text_bpc.py                     # the default profile (what `make run` trains)
    python bench/text_bpc.py --profile text_long # a longer training budget
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from trainyard.config import read_params_file, section_from_dict
from trainyard.environment import ProjectPaths
from trainyard.tasks.families import get_family
from trainyard.tasks.pipeline import train_untracked

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--profile", default=None, help="a profile of params.yaml")
    args = parser.parse_args()

    family = get_family("text")
    raw = read_params_file(args.params, args.profile)
    params = section_from_dict(family.section, raw.get("text"), f"{args.params}: text")
    with tempfile.TemporaryDirectory(prefix="text-bpc-") as scratch:
        os.environ.setdefault("TRAINYARD_STATE_DIR", str(Path(scratch) / ".state"))
        paths = ProjectPaths(Path(scratch))
        started = time.perf_counter()
        prepared = family.prepare(params, ROOT, paths.family("text").prepared)
        prepare_seconds = time.perf_counter() - started
        started = time.perf_counter()
        trained = train_untracked(family, params, paths)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = family.evaluate(
            prepared,
            {t.name: Path(t.model_dir) for t in trained},
            params,
            paths.family("text").reports,
            {t.name: t.history for t in trained},
        )
        evaluate_seconds = time.perf_counter() - started

    print(f"corpus: {prepared.description}")
    print(f"profile: {args.profile or 'default'}; cores: {os.cpu_count()}")
    print(
        f"prepare {prepare_seconds:.1f} s, train {train_seconds:.1f} s "
        f"(fit {sum(t.seconds for t in trained):.1f} s), evaluate {evaluate_seconds:.1f} s"
    )
    for t in trained:
        print(f"  {t.name}: {t.epochs} epochs, {t.n_parameters:,} parameters")
    print(f"{'name':<10} {'test bpc':>9} {'perplexity':>11} {'val bpc':>8}")
    for name in result.ranking("bpc"):
        scores = result.metrics[name]
        print(
            f"{name:<10} {scores['bpc']:>9.4f} {scores['perplexity']:>11.3f} "
            f"{scores['val_bpc']:>8.4f}"
        )
    ngram = result.metrics["ngram"]
    print(f"n-gram order chosen on validation: {int(ngram['order'])}")
    for t in trained:
        ratio = result.metrics[t.name]["bpc"] / ngram["bpc"]
        verdict = "meets" if ratio <= 0.90 else "misses"
        print(f"{t.name} bpc / n-gram bpc = {ratio:.3f} ({verdict} the <= 0.90 target)")


if __name__ == "__main__":
    main()
