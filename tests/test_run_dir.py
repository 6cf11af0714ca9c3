"""run_dir: one configuration and one process per output dir; stamped derived files."""
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tf_enas import run_dir
from tf_enas.run_dir import ConfigMismatch, RunDirectory, RunDirectoryBusy

CONFIG = {"dataset": "digits", "num_layers": 2, "width": 8, "epochs": 3, "lr_max": 0.05,
          "time_budget_s": None, "ops": ("conv3", "conv5"),
          "controller": {"learning_rate": 0.001, "entropy_weight": 0.01}}
GROWABLE = ("epochs", "time_budget_s")


def _with(**changes):
    c = json.loads(json.dumps(CONFIG))
    for k, v in changes.items():
        if "." in k:
            outer, inner = k.split(".")
            c[outer][inner] = v
        else:
            c[k] = v
    return c


def test_first_run_writes_config_and_same_config_resumes(tmp_path):
    with RunDirectory(tmp_path / "run", CONFIG, GROWABLE) as run:
        assert run.status == "new" and run.grown == {}
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f) == _with()  # tuples stored as lists
    with RunDirectory(tmp_path / "run", CONFIG, GROWABLE) as run:
        assert run.status == "resumed" and run.grown == {}


def test_changed_config_names_each_field_with_old_and_new_values(tmp_path):
    with RunDirectory(tmp_path, CONFIG, GROWABLE):
        pass
    changed = _with(lr_max=0.1, num_layers=3, **{"controller.learning_rate": 0.01})
    with pytest.raises(ConfigMismatch) as e:
        RunDirectory(tmp_path, changed, GROWABLE).open()
    msg = str(e.value)
    assert "lr_max: 0.05 (in config.json) → 0.1 (now)" in msg
    assert "num_layers: 2 (in config.json) → 3 (now)" in msg
    assert "controller.learning_rate: 0.001 (in config.json) → 0.01 (now)" in msg
    assert "--overwrite" in msg and "--output_dir" in msg and str(tmp_path) in msg
    assert "width" not in msg and "entropy_weight" not in msg  # unchanged fields not listed
    # a refused run leaves config.json as it was and releases the lock
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["lr_max"] == 0.05
    with RunDirectory(tmp_path, CONFIG, GROWABLE) as run:
        assert run.status == "resumed"


def test_growing_epochs_resumes_and_reports_what_grew(tmp_path):
    with RunDirectory(tmp_path, CONFIG, GROWABLE) as run:
        stamp3 = run.stamp(epoch=3)
    with RunDirectory(tmp_path, _with(epochs=6, time_budget_s=None), GROWABLE) as run:
        assert run.status == "resumed" and run.grown == {"epochs": (3, 6)}
        assert run.stamp(epoch=3) != stamp3  # what was derived before no longer matches
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["epochs"] == 6  # the next rerun compares against 6


def test_shrinking_or_undeclared_growth_is_a_mismatch(tmp_path):
    with RunDirectory(tmp_path, _with(time_budget_s=100.0), GROWABLE):
        pass
    with pytest.raises(ConfigMismatch, match=r"epochs: 3 \(in config.json\) → 2 \(now\)"):
        RunDirectory(tmp_path, _with(epochs=2, time_budget_s=100.0), GROWABLE).open()
    with pytest.raises(ConfigMismatch, match=r"width: 8 \(in config.json\) → 16 \(now\)"):
        RunDirectory(tmp_path, _with(width=16, time_budget_s=100.0), GROWABLE).open()
    # None is an unlimited budget: 100 → None grows
    with RunDirectory(tmp_path, _with(time_budget_s=None), GROWABLE) as run:
        assert run.grown == {"time_budget_s": (100.0, None)}


def test_added_and_removed_fields_are_named(tmp_path):
    with RunDirectory(tmp_path, CONFIG):
        pass
    new = _with(seed=1)
    del new["width"]
    with pytest.raises(ConfigMismatch) as e:
        RunDirectory(tmp_path, new).open()
    assert "seed: (absent) (in config.json) → 1 (now)" in str(e.value)
    assert "width: 8 (in config.json) → (absent) (now)" in str(e.value)


def test_overwrite_clears_the_previous_run(tmp_path):
    with RunDirectory(tmp_path, CONFIG) as run:
        os.makedirs(run.file("checkpoints"))
        open(run.file("checkpoints/ckpt-1.index"), "w").close()
        run_dir.write_json_stamped(run.file("derived.json"), {"child": [0, 1]}, run.stamp(epoch=3))
    with RunDirectory(tmp_path, _with(width=16), overwrite=True) as run:
        assert run.status == "overwritten"
        assert sorted(os.listdir(tmp_path)) == [".lock", "config.json"]
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["width"] == 16


def test_foreign_files_without_config_are_never_deleted_or_resumed(tmp_path):
    (tmp_path / "thesis.tex").write_text("keep me")
    with pytest.raises(ConfigMismatch, match="--overwrite refused.*thesis.tex"):
        RunDirectory(tmp_path, CONFIG, overwrite=True).open()
    with pytest.raises(ConfigMismatch, match="holds files \\(thesis.tex\\) but no config.json"):
        RunDirectory(tmp_path, CONFIG).open()
    assert (tmp_path / "thesis.tex").read_text() == "keep me"


def test_overwrite_killed_midway_is_finished_by_the_next_overwrite(tmp_path):
    trash = tmp_path / ".trash-12345"
    trash.mkdir()
    (trash / "config.json").write_text("{}")
    (tmp_path / "result.json").write_text("{}")  # not yet moved when the kill came
    with pytest.raises(ConfigMismatch, match="no config.json"):
        RunDirectory(tmp_path, CONFIG).open()
    with RunDirectory(tmp_path, CONFIG, overwrite=True):
        assert sorted(os.listdir(tmp_path)) == [".lock", "config.json"]


_HOLDER = textwrap.dedent("""
    import sys
    from tf_enas.run_dir import RunDirectory
    run = RunDirectory(sys.argv[1], {})
    run.lock()
    print("locked", flush=True)
    sys.stdin.read()  # holds the lock until the test closes stdin (or kills it)
""")


def _holder(path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_from_another_process_is_refused(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunDirectoryBusy) as e:
            RunDirectory(tmp_path, CONFIG).open()
        msg = str(e.value)
        assert f"pid {proc.pid} holds" in msg and "two runs cannot share an output dir" in msg
        assert not (tmp_path / "config.json").exists()  # refused before touching anything
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    with RunDirectory(tmp_path, CONFIG) as run:  # released when the holder ends
        assert run.status == "new"


def test_second_open_in_the_same_process_is_refused(tmp_path):
    with RunDirectory(tmp_path, CONFIG):
        with pytest.raises(RunDirectoryBusy, match=f"pid {os.getpid()} \\(this process\\)"):
            RunDirectory(tmp_path, CONFIG).open()


def test_a_dropped_run_directory_releases_its_lock(tmp_path):
    run = RunDirectory(tmp_path, CONFIG).open()
    assert run.locked
    del run
    with RunDirectory(tmp_path, CONFIG) as run:
        assert run.status == "resumed"


def test_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, caplog):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert (tmp_path / ".lock").read_text().strip() == str(proc.pid)  # the pid stays behind
    with caplog.at_level(logging.WARNING, logger="tf_enas.run_dir"):
        with RunDirectory(tmp_path, CONFIG) as run:
            assert run.locked
            assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    assert f"stale lock {tmp_path / '.lock'} of pid {proc.pid}, which is no longer running" \
        in caplog.text
    assert (tmp_path / ".lock").read_text() == ""  # a clean close leaves no pid behind


def test_stamped_json_is_read_only_while_its_stamp_matches(tmp_path):
    with RunDirectory(tmp_path, CONFIG) as run:
        path = run.file("derived.json")
        assert run_dir.read_json_if_current(path, run.stamp(epoch=3)) is None  # absent
        run_dir.write_json_stamped(path, {"child": [1, 0]}, run.stamp(epoch=3))
        assert run_dir.read_json_if_current(path, run.stamp(epoch=3)) == {"child": [1, 0]}
        assert run_dir.read_json_if_current(path, run.stamp(epoch=4)) is None
        assert run_dir.read_stamp(path) == {"config_sha256": run.config_hash, "epoch": 3}
    with RunDirectory(tmp_path, _with(epochs=6), GROWABLE) as run:
        assert run_dir.read_json_if_current(path, run.stamp(epoch=3)) is None  # config grew


def test_an_unstamped_or_half_written_file_counts_as_absent(tmp_path):
    stamp = {"config_sha256": "abc", "epoch": 3}
    path = str(tmp_path / "model.keras")
    run_dir.write_stamped(path, lambda p: open(p, "w").write("v1"), stamp)
    assert run_dir.is_current(path, stamp)

    def killed_write(p):
        raise KeyboardInterrupt  # the process dies while writing the new file
    with pytest.raises(KeyboardInterrupt):
        run_dir.write_stamped(path, killed_write, stamp)
    assert open(path).read() == "v1" and not run_dir.is_current(path, stamp)
    os.remove(path)
    assert run_dir.read_stamp(path) is None


def test_flatten_and_hash():
    assert run_dir.flatten({"a": 1, "c": {"d": {"e": 2}, "f": []}}) == {
        "a": 1, "c.d.e": 2, "c.f": []}
    assert run_dir.config_hash({"a": (1, 2), "b": 1}) == run_dir.config_hash({"b": 1, "a": [1, 2]})
    assert run_dir.config_hash({"a": 1}) != run_dir.config_hash({"a": 2})
