"""Benchmark: ways of choosing the ensemble candidate, compared on the same forecasts.

Reads the forecasts `bench/backtest.py --dump FILE.npz` saved (every candidate's point
forecasts at every validation and holdout origin of each series, with those windows' actuals
and MASE scales) and, for each rule, builds the ensemble from the validation forecasts only,
then prints per series its holdout MASE and the holdout MASE of the run's challenger (the
ensemble, or the single model that scores better on validation), with geometric means over
the series. "trainyard" is the rule the evaluation uses (tasks/forecast/ensemble.choose);
the others are the usual alternatives: a fixed k, every candidate, the candidates within a
margin of the best on validation, and a search over every subset.

    .venv/bin/python bench/backtest.py --peer-fit train --dump /tmp/forecasts.npz
    .venv/bin/python bench/ensemble_rules.py /tmp/forecasts.npz
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np

Rule = Callable[[dict[str, np.ndarray], Callable[[np.ndarray], float]], tuple[list[str], str]]


def combine(points: list[np.ndarray], method: str) -> np.ndarray:
    reduce = np.mean if method == "mean" else np.median
    return reduce(np.stack(points), axis=0)


def ranked(forecasts: dict[str, np.ndarray], mase: Callable[[np.ndarray], float]) -> list[str]:
    return sorted(forecasts, key=lambda name: mase(forecasts[name]))


def trainyard_rule(size: int) -> Rule:
    def rule(forecasts, mase):
        from trainyard.tasks.forecast import ensemble
        from trainyard.tasks.forecast.forecasters import Forecast

        wrapped = {name: Forecast(point=point) for name, point in forecasts.items()}
        return ensemble.choose(wrapped, lambda f: {"mase": mase(f.point)}, "mase", size)

    return rule


def best_k(k: int, method: str) -> Rule:
    return lambda forecasts, mase: (ranked(forecasts, mase)[:k], method)


def within(margin: float, method: str) -> Rule:
    def rule(forecasts, mase):
        order = ranked(forecasts, mase)
        best = mase(forecasts[order[0]])
        members = [name for name in order if mase(forecasts[name]) <= best * (1 + margin)]
        return (members if len(members) >= 2 else order[:2]), method

    return rule


def every_subset(forecasts, mase):
    best, best_value = None, np.inf
    for k in range(2, len(forecasts) + 1):
        for members in itertools.combinations(forecasts, k):
            for method in ("mean", "median"):
                value = mase(combine([forecasts[m] for m in members], method))
                if value < best_value:
                    best, best_value = (list(members), method), value
    return best


RULES: dict[str, Rule] = {
    "trainyard (best k<=4)": trainyard_rule(4),
    "best 2, mean": best_k(2, "mean"),
    "best 3, mean": best_k(3, "mean"),
    "best 3, median": best_k(3, "median"),
    "best 4, mean": best_k(4, "mean"),
    "all, mean": best_k(99, "mean"),
    "all, median": best_k(99, "median"),
    "within 10%, mean": within(0.10, "mean"),
    "within 30%, mean": within(0.30, "mean"),
    "every subset": every_subset,
}


def load(path: Path) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Returns {series: {name: {split: array}}} from the --dump file ("_actual", "_scale"
    are the windows' actuals and MASE scales)."""
    data: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    with np.load(path, allow_pickle=False) as stored:
        for key in stored.files:
            series, name, split = key.split("/")
            data.setdefault(series, {}).setdefault(name, {})[split] = stored[key]
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path, help="the file bench/backtest.py --dump wrote")
    args = parser.parse_args()
    from trainyard.tasks.forecast.evaluate import score
    from trainyard.tasks.forecast.forecasters import Forecast

    data = load(args.dump)
    names = list(data)
    width = max(14, *map(len, names))
    print("holdout MASE, ensemble / challenger (rule applied to validation forecasts only)")
    print(f"{'rule':24s}" + "".join(f"{n[:width]:>{width + 2}s}" for n in names) + "   geomean")
    for title, rule in RULES.items():
        cells = []
        for series in names:
            windows = data[series]
            models = {n: s for n, s in windows.items() if not n.startswith("_")}

            def mase(
                point: np.ndarray, split: str = "validation", windows: dict = windows
            ) -> float:
                actual, scale = windows["_actual"][split], windows["_scale"][split]
                return score(actual, Forecast(point=point), scale)["mase"]

            validation = {n: s["validation"] for n, s in models.items()}
            members, method = rule(validation, mase)
            on_validation = mase(combine([validation[m] for m in members], method))
            held = mase(combine([models[m]["holdout"] for m in members], method), "holdout")
            single = ranked(validation, mase)[0]
            chosen = (
                held
                if on_validation < mase(validation[single])
                else mase(models[single]["holdout"], "holdout")
            )
            cells.append((held, chosen))
        geo = np.exp(np.mean(np.log([c for _, c in cells])))
        text = "".join(f"{f'{e:.3f} / {c:.3f}':>{width + 2}s}" for e, c in cells)
        print(f"{title:24s}{text}   {geo:.3f}")
    print("models' holdout MASE:")
    for series in names:
        models = {n: s for n, s in data[series].items() if not n.startswith("_")}
        actual, scale = data[series]["_actual"]["holdout"], data[series]["_scale"]["holdout"]
        scores = {
            n: score(actual, Forecast(point=s["holdout"]), scale)["mase"] for n, s in models.items()
        }
        print(f"  {series}: " + ", ".join(f"{n} {v:.3f}" for n, v in scores.items()))


if __name__ == "__main__":
    main()
