"""The search-quality benchmark's bookkeeping: time to target and the grouped table."""
import numpy as np

from tf_enas.benchmarks import search_quality as sq


def _row(method, seed, test, val, curve):
    return {"method": method, "dataset": "mnist1d", "seed": seed, "test_accuracy": test,
            "val_accuracy": val, "wall_seconds": 10.0 * (seed + 1), "evaluated": 5,
            "curve": curve, "seconds_to_target": sq.seconds_to_target(curve)}


def test_seconds_to_target_is_the_first_crossing():
    assert sq.seconds_to_target([(1.0, 0.5), (2.0, 0.97), (3.0, 0.99)]) == 2.0
    assert sq.seconds_to_target([(1.0, 0.5), (2.0, 0.969)]) is None
    assert sq.seconds_to_target([]) is None


def test_markdown_groups_seeds_with_mean_and_std():
    rows = [_row("ENAS", 0, 0.98, 0.975, [(5.0, 0.97)]),
            _row("ENAS", 1, 0.96, 0.965, [(9.0, 0.96)]),
            _row("random", 0, 0.90, 0.91, [])]
    table = sq.markdown(rows).splitlines()
    assert len(table) == 2 + len(sq.PAPER_ROWS) + 2
    enas = next(line for line in table if "| ENAS |" in line)
    test = np.array([0.98, 0.96])
    assert f"{test.mean():.4f} ± {test.std():.4f}" in enas
    assert "| 5 s (1/2) |" in enas and "| 15 | 2 |" in enas
    assert "not reached" in next(line for line in table if "| random |" in line)


def test_every_method_of_the_issue_is_in_the_table():
    names = list(sq.weight_sharing_methods())
    assert names == ["random (shared weights)", "ENAS (architecture only)",
                     "joint, response=none", "joint + unrolled", "joint + ift"]
    configs = [sq.search_config("mnist1d", 0, 5.0, True, **kw)
               for _, kw in sq.weight_sharing_methods().values()]
    assert [c.response for c in configs] == ["none", "none", "none", "unrolled", "ift"]
    assert [c.reward for c in configs] == ["accuracy", "accuracy", "loss", "loss", "loss"]
    assert all(c.retrain.optimizer == "sgd" for c in configs[2:])


def test_shards_of_the_section_merge_into_one_table(tmp_path):
    from absl import flags

    from tf_enas import files
    from tf_enas.benchmarks import shards
    from tf_enas.bin import benchmark

    jobs = sq.jobs(["mnist1d", "digits"], ["0", "1", "2"])
    parts = [shards.select(jobs, f"{i}/4") for i in range(4)]
    assert sorted(j for p in parts for j in p) == sorted(jobs) and len(set(jobs)) == 6
    rows = [dict(_row("ENAS", seed, 0.9 + seed / 100, 0.9, [(5.0, 0.97)]), dataset=d,
                 budget_s=120.0) for d, seed in jobs]
    for i, part in enumerate(parts):
        files.write_json(str(tmp_path / f"s{i}.json"), {"search": {"rows": [
            r for r in rows if (r["dataset"], r["seed"]) in part]}})
    merge = ",".join(str(tmp_path / f"s{i}.json") for i in range(4))
    args = ["--sections=search", f"--merge={merge}", f"--output={tmp_path}/m.md",
            f"--json_out={tmp_path}/m.json"]
    if "output_dir" in flags.FLAGS:  # another test imported the search binary's flags here
        args.append(f"--output_dir={tmp_path}")
    try:
        flags.FLAGS(["tf-enas-benchmark", *args])
        benchmark.main(["tf-enas-benchmark"])
    finally:
        flags.FLAGS.unparse_flags()
    report = (tmp_path / "m.md").read_text()
    assert "## search quality (120 s search per method, then retrain)" in report
    for dataset in ("mnist1d", "digits"):
        test = np.array([0.90, 0.91, 0.92])
        line = next(x for x in report.splitlines() if x.startswith(f"| {dataset} | ENAS |"))
        assert f"{test.mean():.4f} ± {test.std():.4f}" in line and line.endswith("| 3 |")
