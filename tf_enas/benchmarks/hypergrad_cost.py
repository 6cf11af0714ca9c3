"""Cost of the hypergradient engine, measured side by side in one process.

``measure(quick)`` times, for an MLP and a small CNN on MNIST-1D (float32):
  * one HVP / one gradient (both HVP modes), eager vs tf.function vs XLA;
  * implicit hypergradient with CG(10) / one gradient;
  * unrolled K steps (reverse mode: tf.while_loop, unrolled Python loop, checkpointed) / K
    plain training steps, plus forward mode, and the while_loop with the weight decay
    written as w ** 2 instead of tf.square(w) (see ``_minibatch_losses``);
  * peak memory of reverse (full and checkpointed) vs forward mode for K = 10, 100, 1000.
Every time is the median over repeats after a warm-up call, with the compared functions
interleaved round by round so that machine noise hits them alike. ``markdown(result)``
renders the "## hypergrad" section of BENCHMARKS.md.
"""
import gc
import os
import platform
import statistics
import time

import numpy as np
import tensorflow as tf

from tf_enas import hypergrad
from tf_enas.hypergrad.hvp import MODES, REVERSE_OVER_REVERSE, gradient
from tf_enas.hypergrad import inner_loop
from tf_enas.hypergrad import optimizers as optimizers_lib

COMMAND = ("python -c \"from tf_enas.benchmarks import hypergrad_cost as h; "
           "print(h.markdown(h.measure()))\"")


# ------------------------------------------------------------------------- helpers
def _block(out):
    for t in tf.nest.flatten(out):
        if hasattr(t, "numpy"):
            t.numpy()


def _side_by_side(fns, repeats, clock=time.perf_counter):
    """{name: median seconds of clock} with one warm-up call each, then `repeats` interleaved
    rounds."""
    for fn in fns.values():
        _block(fn())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            _block(fn())
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _timed_first_call(fn, clock=time.perf_counter):
    start = clock()
    _block(fn())
    return clock() - start


def _ce(y, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)


def _data():
    from mnist1d.data import get_dataset_args, make_dataset
    d = make_dataset(get_dataset_args())
    x = d["x"].astype(np.float32)
    x = (x - x.mean()) / x.std()
    return x, d["y"].astype(np.int32)


def _models():
    """name -> (builder of a fresh Keras model, input reshaper)."""
    import keras

    def mlp():
        return keras.Sequential([keras.Input((40,)),
                                 keras.layers.Dense(256, activation="relu"),
                                 keras.layers.Dense(256, activation="relu"),
                                 keras.layers.Dense(10)])

    def cnn():
        return keras.Sequential([
            keras.Input((40, 1)),
            keras.layers.Conv1D(32, 5, padding="same", activation="relu"),
            keras.layers.Conv1D(32, 5, strides=2, padding="same", activation="relu"),
            keras.layers.Conv1D(32, 5, strides=2, padding="same", activation="relu"),
            keras.layers.Flatten(), keras.layers.Dense(10)])

    return {"mlp": (mlp, lambda x: x), "cnn": (cnn, lambda x: x[..., None])}


def _regularized(f, n_params):
    """train_loss(params, hparams) = CE + sum_i exp(h_i) |W_i|^2 / 2 (one log-decay per tensor)."""
    def train_loss(params, hparams):
        decay = tf.add_n([tf.exp(hparams[0][i]) * tf.reduce_sum(params[i] ** 2) / 2
                          for i in range(n_params)])
        return f(params) + decay
    return train_loss


# -------------------------------------------------------------------- measurements
def _per_model(name, build, shape, x, y, quick):
    import keras
    keras.utils.set_random_seed(0)
    model = build()
    f = hypergrad.functional_loss(model, _ce)
    params = hypergrad.model_params(model)
    n = len(params)
    batch = 512
    xb, yb = tf.constant(shape(x[:batch])), tf.constant(y[:batch])
    xv, yv = tf.constant(shape(x[3200:3200 + batch])), tf.constant(y[3200:3200 + batch])
    loss = lambda ps: f(ps, xb, yb)  # noqa: E731
    vec = [tf.random.stateless_normal(p.shape, [1, i]) for i, p in enumerate(params)]
    repeats = 5 if quick else 20

    grad_eager = lambda ps: gradient(loss, ps)[1]  # noqa: E731
    hvp_eager = {m: (lambda ps, vs, m=m: hypergrad.hvp(loss, ps, vs, mode=m))
                 for m in MODES}
    grad_fn = tf.function(grad_eager)
    grad_xla = tf.function(grad_eager, jit_compile=True)
    hvp_fns = {m: tf.function(fn) for m, fn in hvp_eager.items()}
    hvp_xla = {m: tf.function(fn, jit_compile=True) for m, fn in hvp_eager.items()}

    train_loss = _regularized(loss, n)
    val_loss = lambda ps, hs: f(ps, xv, yv)  # noqa: E731
    hparams = [tf.fill([n], tf.math.log(1e-4))]
    # Damping 1.0 keeps the (indefinite, freshly initialized) Hessian's CG running all 10
    # iterations; the run's info is reported next to the time.
    implicit = tf.function(lambda ps, hs: hypergrad.implicit_hypergradient(
        train_loss, val_loss, ps, hs, method="cg", iterations=10, tol=0.0, damping=1.0))
    _, info = implicit(params, hparams)

    default = REVERSE_OVER_REVERSE
    fns = {"grad": lambda: grad_fn(params), "grad_xla": lambda: grad_xla(params),
           "implicit_cg10": lambda: implicit(params, hparams)}
    for m in MODES:
        fns["hvp_" + m] = lambda m=m: hvp_fns[m](params, vec)
        fns["hvp_xla_" + m] = lambda m=m: hvp_xla[m](params, vec)
    t = _side_by_side(fns, repeats)
    eager = _side_by_side({"grad": lambda: grad_eager(params),
                           "hvp": lambda: hvp_eager[default](params, vec)},
                          max(3, repeats // 4))

    out = {
        "params": int(sum(int(np.prod(p.shape)) for p in params)), "batch": batch,
        "grad_ms": 1e3 * t["grad"],
        "hvp_over_grad": {m: t["hvp_" + m] / t["grad"] for m in MODES},
        "hvp_ms": {"eager": 1e3 * eager["hvp"], "tf.function": 1e3 * t["hvp_" + default],
                   "xla": 1e3 * t["hvp_xla_" + default]},
        "hvp_xla_over_grad_xla": {m: t["hvp_xla_" + m] / t["grad_xla"] for m in MODES},
        "grad_ms_modes": {"eager": 1e3 * eager["grad"], "tf.function": 1e3 * t["grad"],
                          "xla": 1e3 * t["grad_xla"]},
        "cg10_over_grad": t["implicit_cg10"] / t["grad"],
        "cg10_iterations": int(info.iterations),
        "cg10_negative_curvature": bool(info.negative_curvature),
    }
    out["unrolled"] = _unrolled(f, params, shape, x, y, quick)
    return out


def _minibatch_losses(f, shape, x, y, batch, n_params, square=tf.square):
    """(train_loss(params, hparams, step), val_loss): minibatch CE + exp(h_1) sum |W|^2 / 2.

    The decay is tf.square(w), as in tf_enas.objective. Written as w ** 2 (square=_power2),
    it costs the tf.while_loop path one full-size Pow per weight tensor per step: the
    second derivative of Pow(w, 2) is Pow(w, c) with c = 2 - 1 computed inside the loop
    body; while_v2 stores such non-Const intermediates in TensorLists, so grappler cannot
    fold c and rewrite the Pow as it does in a Python loop or a plain step.
    """
    xs = tf.constant(shape(x[:3200]))
    ys = tf.constant(y[:3200])
    n_batches = 3200 // batch
    xv, yv = tf.constant(shape(x[3200:3200 + 512])), tf.constant(y[3200:3200 + 512])

    def train_loss(params, hparams, step):
        i = (step % n_batches) * batch
        loss = f(params, xs[i:i + batch], ys[i:i + batch])
        return loss + tf.exp(hparams[1]) * tf.add_n(
            [tf.reduce_sum(square(p)) for p in params[:n_params]]) / 2

    return train_loss, lambda ps, hs: f(ps, xv, yv)


def _power2(w):
    return w ** 2


def _unrolled(f, params, shape, x, y, quick, clock=time.perf_counter):
    steps = 6 if quick else 20  # the Python loop traces in O(K): keep quick runs short
    train_loss, val_loss = _minibatch_losses(f, shape, x, y, 128, len(params))
    train_loss_pow, _ = _minibatch_losses(f, shape, x, y, 128, len(params), _power2)
    hparams = [tf.constant(np.log(0.05), tf.float32), tf.constant(np.log(1e-4), tf.float32)]
    lr = lambda h: tf.exp(h[0])  # noqa: E731
    opt = optimizers_lib.get("sgd")
    k = tf.constant(steps)

    @tf.function
    def plain(ps, hs):
        hyper = inner_loop.hyperparameters(hs, tf.float32, lr, 0.0)
        return inner_loop.run(train_loss, opt, ps, [], hs, hyper, 0, k)[0]

    reverse = tf.function(lambda ps, hs: hypergrad.unrolled_hypergradient(
        train_loss, val_loss, ps, hs, k, learning_rate=lr, loop="while"))
    forward = tf.function(lambda ps, hs: hypergrad.forward_hypergradient(
        train_loss, val_loss, ps, hs, k, learning_rate=lr))
    python_loop = tf.function(lambda ps, hs: hypergrad.unrolled_hypergradient(
        train_loss, val_loss, ps, hs, steps, learning_rate=lr, loop="python"))
    checkpointed = tf.function(lambda ps, hs: hypergrad.unrolled_hypergradient(
        train_loss, val_loss, ps, hs, k, learning_rate=lr, memory="checkpointed"))
    reverse_pow = tf.function(lambda ps, hs: hypergrad.unrolled_hypergradient(
        train_loss_pow, val_loss, ps, hs, k, learning_rate=lr, loop="while"))
    fns = {"plain": lambda: plain(params, hparams), "reverse": lambda: reverse(params, hparams),
           "forward": lambda: forward(params, hparams),
           "python_loop": lambda: python_loop(params, hparams),
           "checkpointed": lambda: checkpointed(params, hparams),
           "reverse_pow": lambda: reverse_pow(params, hparams)}
    first = {name: _timed_first_call(fn, clock) for name, fn in fns.items()}
    t = _side_by_side(fns, 3 if quick else 10, clock)
    return {"steps": steps, "batch": 128, "hparams": 2,
            "reverse_over_plain": t["reverse"] / t["plain"],
            "python_loop_over_plain": t["python_loop"] / t["plain"],
            "forward_over_plain": t["forward"] / t["plain"],
            "checkpointed_over_plain": t["checkpointed"] / t["plain"],
            "reverse_pow_over_plain": t["reverse_pow"] / t["plain"],
            "trace_s": {"while_loop": first["reverse"] - t["reverse"],
                        "python_loop": first["python_loop"] - t["python_loop"]}}


# ------------------------------------------------------------------------ memory
def _rss_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_probe():
    """(description, measure(fn) -> peak bytes above the pre-call level)."""
    if tf.config.list_physical_devices("GPU"):
        def measure(fn):
            tf.config.experimental.reset_memory_stats("GPU:0")
            base = tf.config.experimental.get_memory_info("GPU:0")["current"]
            _block(fn())
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] - base
        return "GPU:0 peak allocated bytes (tf.config.experimental.get_memory_info)", measure
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None, None

    try:
        import ctypes
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        trim = None

    def measure(fn):
        gc.collect()
        if trim is not None:
            trim(0)  # hand freed heap pages back, so that a new peak shows as new RSS
        base = _rss_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS
        _block(fn())
        return 1024 * (_rss_kib("VmHWM") - base)
    return ("CPU proxy: peak resident set size above the pre-call RSS (VmHWM after a reset "
            "through /proc/self/clear_refs, glibc malloc_trim before each call); includes "
            "allocator slack and working set (a constant-memory loop reads 5-20 MiB), "
            "misses memory still mapped from earlier calls"), measure


def _memory(x, y, quick):
    import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((40,)), keras.layers.Dense(256, activation="relu"),
                              keras.layers.Dense(10)])
    f = hypergrad.functional_loss(model, _ce)
    params = hypergrad.model_params(model)
    train_loss, val_loss = _minibatch_losses(f, lambda a: a, x, y, 128, len(params))
    hparams = [tf.constant(np.log(0.05), tf.float32), tf.constant(np.log(1e-4), tf.float32)]
    lr = lambda h: tf.exp(h[0])  # noqa: E731
    reverse = tf.function(lambda ps, hs, k: hypergrad.unrolled_hypergradient(
        train_loss, val_loss, ps, hs, k, learning_rate=lr, loop="while"))
    python_loop = tf.function(lambda ps, hs, k: hypergrad.unrolled_hypergradient(
        train_loss, val_loss, ps, hs, k, learning_rate=lr, loop="python"))
    forward = tf.function(lambda ps, hs, k: hypergrad.forward_hypergradient(
        train_loss, val_loss, ps, hs, k, learning_rate=lr))
    checkpointed = tf.function(lambda ps, hs, k: hypergrad.unrolled_hypergradient(
        train_loss, val_loss, ps, hs, k, learning_rate=lr, memory="checkpointed"))
    description, probe = _memory_probe()
    for fn in (reverse, forward, checkpointed):
        _block(fn(params, hparams, tf.constant(2)))
    rows = []
    python_ks = (10,) if quick else (10, 100)  # a Python loop traces O(K): not at K = 1000
    for k in (10, 100) if quick else (10, 100, 1000):
        row = {"K": k}
        # Smallest expected footprint first, so that memory left mapped by an earlier run
        # hides as little as possible of a later one.
        runs = [("forward", lambda: forward(params, hparams, tf.constant(k))),
                ("checkpointed", lambda: checkpointed(params, hparams, tf.constant(k)))]
        if k in python_ks:
            _block(python_loop(params, hparams, k))  # trace outside the measurement
            runs.append(("python", lambda: python_loop(params, hparams, k)))
        runs.append(("reverse", lambda: reverse(params, hparams, tf.constant(k))))
        for name, fn in runs:
            start = time.perf_counter()
            row[name + "_bytes"] = probe(fn) if probe else None
            row[name + "_s"] = time.perf_counter() - start
        rows.append(row)
    return {"method": description or "unavailable (no GPU and /proc/self/clear_refs not "
                                      "writable)",
            "model": "MLP 40-256-10, batch 128, SGD, 2 hyperparameters (log lr, log decay)",
            "params": int(sum(int(np.prod(p.shape)) for p in params)),
            "param_bytes": 4 * int(sum(int(np.prod(p.shape)) for p in params)),
            "rows": rows}


def measure(quick: bool = False) -> dict:
    """All cost ratios as a dict (see module docstring); quick=True: fewer repeats, the
    MLP only, memory up to K = 100."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    x, y = _data()
    gpus = tf.config.list_physical_devices("GPU")
    result = {
        "quick": quick, "tensorflow": tf.__version__,
        "device": (f"GPU: {gpus[0].name}" if gpus else
                   f"CPU: {platform.processor() or platform.machine()}, "
                   f"{os.cpu_count()} logical cores"),
        "dtype": "float32",
        "timing": ("median of %d repeats after one warm-up call, compared functions "
                   "interleaved" % (5 if quick else 20)),
        "models": {},
    }
    result["section_s"] = {"data": time.perf_counter() - start}
    for name, (build, shape) in list(_models().items())[: 1 if quick else None]:
        section = time.perf_counter()
        result["models"][name] = _per_model(name, build, shape, x, y, quick)
        result["section_s"][name] = time.perf_counter() - section
    section = time.perf_counter()
    result["memory"] = _memory(x, y, quick)
    result["section_s"]["memory"] = time.perf_counter() - section
    result["wall_s"] = time.perf_counter() - start
    result["cpu_s"] = time.process_time()
    return result


# ------------------------------------------------------------- CPU time, one thread
CPU_TIME_COMMAND = ("python -c \"from tf_enas.benchmarks import hypergrad_cost as h; "
                    "print(h.cpu_time_markdown(h.measure_cpu_time()))\"")


def measure_cpu_time(quick: bool = False) -> dict:
    """The unrolled ratios (see ``_unrolled``) by process CPU time with one TensorFlow thread.

    Work rather than wall time: robust to other jobs on a shared machine, blind to what
    parallelism buys. Needs a fresh process (TensorFlow fixes its thread pools at first use).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError as err:
        raise RuntimeError("measure_cpu_time() needs a fresh Python process: TensorFlow's "
                           "thread pools are already initialized") from err
    import keras
    x, y = _data()
    result = {"quick": quick, "tensorflow": tf.__version__,
              "timing": "median process CPU time of %d interleaved rounds after a warm-up "
                        "call, intra-op and inter-op threads = 1" % (3 if quick else 10),
              "models": {}}
    for name, (build, shape) in list(_models().items())[: 1 if quick else None]:
        keras.utils.set_random_seed(0)
        model = build()
        f = hypergrad.functional_loss(model, _ce)
        result["models"][name] = _unrolled(f, hypergrad.model_params(model), shape, x, y,
                                           quick, clock=time.process_time)
    return result


def cpu_time_markdown(result: dict) -> str:
    """A table of a measure_cpu_time() result."""
    names = list(result["models"])
    lines = ["Unrolled ratios by CPU time, one thread (" + result["timing"] + "; TensorFlow "
             + result["tensorflow"] + (", quick run" if result["quick"] else "") + "). "
             f"Regenerate: `{CPU_TIME_COMMAND}`.", "",
             "| K steps / K plain steps, by CPU time | goal | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    rows = [("unrolled reverse, Python loop", "", "python_loop_over_plain"),
            ("unrolled reverse, tf.while_loop (tensor K)", "<= 3", "reverse_over_plain"),
            ("the same, weight decay written as w ** 2", "", "reverse_pow_over_plain"),
            ("unrolled reverse, memory='checkpointed'", "", "checkpointed_over_plain"),
            ("forward mode (2 hparams)", "", "forward_over_plain")]
    for label, goal, key in rows:
        lines.append(f"| {label} | {goal} | "
                     + " | ".join(_opt(result["models"][n], key) for n in names) + " |")
    return "\n".join(lines + [""])


# ------------------------------------------------------------------------ report
def _opt(d, key):
    return "n/a" if d.get(key) is None else f"{d[key]:.2f}"


def markdown(result: dict) -> str:
    """The "## hypergrad" section of BENCHMARKS.md for a measure() result."""
    models = result["models"]
    names = list(models)
    lines = [
        "## hypergrad", "",
        f"Regenerate: `{COMMAND}` (quick check: `measure(quick=True)`).", "",
        f"{result['device']}; TensorFlow {result['tensorflow']}; {result['dtype']}; "
        f"{result['timing']}. Ratios are of times measured side by side in one process"
        + (" (quick run: fewer repeats, noisier)." if result["quick"] else "."), "",
        "| ratio | goal | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]

    def row(label, goal, fmt):
        lines.append(f"| {label} | {goal} | " + " | ".join(fmt(models[n]) for n in names) + " |")

    row("parameters", "", lambda m: f"{m['params']:,}")
    row("one gradient (ms, tf.function, batch 512)", "", lambda m: f"{m['grad_ms']:.2f}")
    row("HVP / grad, reverse-over-reverse (default)", "<= 2.5",
        lambda m: f"{m['hvp_over_grad']['reverse_over_reverse']:.2f}")
    row("HVP / grad, forward-over-reverse", "<= 2.5",
        lambda m: f"{m['hvp_over_grad']['forward_over_reverse']:.2f}")
    row("HVP / grad under XLA, reverse-over-reverse", "",
        lambda m: f"{m['hvp_xla_over_grad_xla']['reverse_over_reverse']:.2f}")
    row("HVP / grad under XLA, forward-over-reverse", "",
        lambda m: f"{m['hvp_xla_over_grad_xla']['forward_over_reverse']:.2f}")
    row("implicit hypergradient, CG(10) / grad", "<= 25",
        lambda m: f"{m['cg10_over_grad']:.1f} ({m['cg10_iterations']} it."
                  + (", neg. curv." if m["cg10_negative_curvature"] else "") + ")")
    row("unrolled reverse, K steps / K plain steps, Python loop (auto for K <= 32)", "<= 3",
        lambda m: f"{m['unrolled']['python_loop_over_plain']:.2f}")
    row("unrolled reverse, K steps / K plain steps, tf.while_loop (tensor K)", "<= 3",
        lambda m: f"{m['unrolled']['reverse_over_plain']:.2f}")
    row("the same, weight decay written as w ** 2 (not tf.square)", "",
        lambda m: _opt(m["unrolled"], "reverse_pow_over_plain"))
    row("unrolled reverse, memory='checkpointed' (sqrt K), K steps / K plain steps", "",
        lambda m: _opt(m["unrolled"], "checkpointed_over_plain"))
    row("forward mode (2 hparams), K steps / K plain steps", "",
        lambda m: f"{m['unrolled']['forward_over_plain']:.2f}")
    row("trace + first call overhead, while_loop / Python loop (s)", "",
        lambda m: f"{m['unrolled']['trace_s']['while_loop']:.1f} / "
                  f"{m['unrolled']['trace_s']['python_loop']:.1f}")
    u = models[names[0]]["unrolled"]
    lines += ["", f"Unrolled: SGD, K = {u['steps']}, minibatch {u['batch']}, "
              f"{u['hparams']} hyperparameters (log learning rate, log weight decay); "
              "the implicit run tunes one log weight decay per weight tensor, damping 1.0.", "",
              "HVP time (ms) by execution mode (default reverse-over-reverse):", "",
              "| model | eager | tf.function | XLA (jit_compile) |", "|---|---|---|---|"]
    for n in names:
        h = models[n]["hvp_ms"]
        lines.append(f"| {n} | {h['eager']:.2f} | {h['tf.function']:.2f} | {h['xla']:.2f} |")
    mem = result["memory"]
    lines += ["", f"Peak memory, reverse vs forward mode ({mem['model']}; "
              f"{mem['params']:,} parameters = {mem['param_bytes'] / 2**10:.0f} KiB). "
              f"Measured as: {mem['method']}. Checkpointed: "
              "`unrolled_hypergradient(..., memory=\"checkpointed\")`, (w, s) stored every "
              "ceil(sqrt K) steps, segments recomputed in the backward pass.", "",
              "| K | reverse, while_loop (MiB) | reverse, Python loop (MiB) | "
              "reverse, checkpointed (MiB) | forward (MiB) | checkpointed / forward "
              "(goal <= 3 at K = 1000) | reverse (s) | checkpointed (s) | forward (s) |",
              "|---|---|---|---|---|---|---|---|---|"]

    def mib(b):
        return "n/a" if b is None else f"{b / 2**20:.1f}"

    def ratio(a, b):
        return "n/a" if a is None or not b else f"{a / b:.2f}"

    def secs(r, name):
        return "n/a" if r.get(name + "_s") is None else f"{r[name + '_s']:.2f}"

    for r in mem["rows"]:
        lines.append(f"| {r['K']} | {mib(r['reverse_bytes'])} | {mib(r.get('python_bytes'))} | "
                     f"{mib(r.get('checkpointed_bytes'))} | {mib(r['forward_bytes'])} | "
                     f"{ratio(r.get('checkpointed_bytes'), r['forward_bytes'])} | "
                     f"{secs(r, 'reverse')} | {secs(r, 'checkpointed')} | {secs(r, 'forward')} |")
    lines += ["", "(Python loop: not run where n/a, its graph and trace grow with K. Times "
              "include the measurement itself.)"]
    sections = ", ".join(f"{k} {v:.0f} s" for k, v in result.get("section_s", {}).items())
    lines += ["", f"(measure() took {result['wall_s']:.0f} s wall"
              + (f", {result['cpu_s']:.0f} s CPU in this process" if "cpu_s" in result else "")
              + (f": {sections}" if sections else "") + ".)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(measure(quick=True)))
