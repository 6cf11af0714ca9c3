"""The cost benchmark's measuring instruments (not its timings, which are never asserted)."""
import numpy as np
import pytest

from tf_enas.benchmarks import hypergrad_cost


def test_memory_probe_sees_a_known_allocation():
    description, probe = hypergrad_cost._memory_probe()
    if probe is None:
        pytest.skip("no GPU and /proc/self/clear_refs is not writable: no memory probe here")
    if description.startswith("GPU"):
        pytest.skip("GPU probe: checked by the GPU benchmark run")
    size = 64 * 2**20
    peak = probe(lambda: np.ones(size // 8))  # 64 MiB, every page written
    assert 0.9 * size <= peak <= 2 * size, peak
    assert probe(lambda: np.ones(8)) < 0.2 * size


def test_markdown_renders_every_measured_number():
    model = {
        "params": 1234, "batch": 512, "grad_ms": 1.5,
        "hvp_over_grad": {"forward_over_reverse": 2.25, "reverse_over_reverse": 1.75},
        "hvp_ms": {"eager": 10.0, "tf.function": 3.0, "xla": 2.5},
        "hvp_xla_over_grad_xla": {"forward_over_reverse": 2.5, "reverse_over_reverse": 2.0},
        "grad_ms_modes": {"eager": 5.0, "tf.function": 1.5, "xla": 1.25},
        "cg10_over_grad": 17.25, "cg10_iterations": 10, "cg10_negative_curvature": True,
        "unrolled": {"steps": 20, "batch": 128, "hparams": 2, "reverse_over_plain": 4.5,
                     "python_loop_over_plain": 2.75, "forward_over_plain": 5.25,
                     "checkpointed_over_plain": 3.625, "reverse_pow_over_plain": 6.125,
                     "trace_s": {"while_loop": 1.0, "python_loop": 6.0}},
    }
    result = {"quick": True, "tensorflow": "2.x", "device": "CPU: test", "dtype": "float32",
              "timing": "median of 5", "models": {"mlp": model, "cnn": model},
              "memory": {"method": "test probe", "model": "MLP", "params": 10, "param_bytes": 40,
                         "rows": [{"K": 10, "reverse_bytes": 3 * 2**20, "forward_bytes": 2**20,
                                   "python_bytes": 2 * 2**20, "checkpointed_bytes": 1.5 * 2**20,
                                   "reverse_s": 0.5, "checkpointed_s": 0.75,
                                   "forward_s": 0.25},
                                  {"K": 1000, "reverse_bytes": 300 * 2**20,
                                   "forward_bytes": 2**20, "checkpointed_bytes": 2.5 * 2**20,
                                   "reverse_s": 5.0, "checkpointed_s": 6.0,
                                   "forward_s": 2.5}]},
              "wall_s": 42.0}
    text = hypergrad_cost.markdown(result)
    assert text.startswith("## hypergrad")
    assert hypergrad_cost.COMMAND in text
    for expected in ("| 1.75 | 1.75 |", "| 2.25 | 2.25 |", "17.2 (10 it., neg. curv.)",
                     "| 2.75 | 2.75 |", "| 4.50 | 4.50 |", "| 5.25 | 5.25 |",
                     "| 3.62 | 3.62 |", "| 6.12 | 6.12 |",
                     "| 10 | 3.0 | 2.0 | 1.5 | 1.0 | 1.50 | 0.50 | 0.75 | 0.25 |",
                     "| 1000 | 300.0 | n/a | 2.5 | 1.0 | 2.50 | 5.00 | 6.00 | 2.50 |",
                     "test probe", "quick run"):
        assert expected in text, expected


def test_cpu_time_markdown_renders_every_ratio():
    unrolled = {"python_loop_over_plain": 2.75, "reverse_over_plain": 3.125,
                "reverse_pow_over_plain": 4.5, "checkpointed_over_plain": 4.25,
                "forward_over_plain": 5.5}
    text = hypergrad_cost.cpu_time_markdown(
        {"quick": False, "tensorflow": "2.x", "timing": "median of 10",
         "models": {"mlp": unrolled, "cnn": dict(unrolled, reverse_over_plain=2.875)}})
    assert hypergrad_cost.CPU_TIME_COMMAND in text
    for expected in ("| 2.75 | 2.75 |", "| <= 3 | 3.12 | 2.88 |", "| 4.50 | 4.50 |",
                     "| 4.25 | 4.25 |", "| 5.50 | 5.50 |"):
        assert expected in text, expected
