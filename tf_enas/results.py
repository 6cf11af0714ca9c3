"""After the search: derive the best child, retrain it from scratch, the result record."""
from __future__ import annotations

import dataclasses
import logging

import keras
import numpy as np

from tf_enas import checkpoints
from tf_enas import files
from tf_enas import retrain as retrain_lib
from tf_enas.decay_groups import RESULT_KEYS, decision_name, group_keys
from tf_enas.run_dir import write_json_stamped, write_stamped

log = logging.getLogger(__name__)


def derive(search) -> dict:
    """Samples derive_samples children (`candidates`: within derive_max_params, if set) and
    keeps the best: by accuracy on the whole validation set with the shared weights, or
    (derive_proxy_epochs > 0) by validation accuracy after that many epochs of the retrain
    from scratch (`proxy_val_accuracy`). Its continuous hyperparameters are the policy's
    medians given its architecture (`child_hyperparameters`)."""
    cfg = search.config
    children, params, drawn = candidates(search)
    scores = search.shared.accuracies(children, search.x_val, search.y_val).numpy()
    proxy = ([proxy_val_accuracy(search, c) for c in children] if cfg.derive_proxy_epochs
             else None)
    best = children[int(np.argmax(scores if proxy is None else proxy))]
    searched, hyperparameters = child_hyperparameters(search, best)
    names = [search.space.to_string(c) for c in children]
    return {"child": search.space.to_string(best),
            "architecture": search.space.architecture(best),
            "searched_hyperparameters": searched,
            "hyperparameters": hyperparameters,
            "shared_weights_val_accuracy": float(np.max(scores)),
            "derive_mean_val_accuracy": float(np.mean(scores)),
            **({} if proxy is None else {"proxy_val_accuracies": dict(zip(names, proxy))}),
            **({} if params is None else {"derive_params": dict(zip(names, params)),
                                          "derive_draws": drawn})}


MAX_DRAW_ROUNDS = 50  # a parameter budget draws at most this many rounds of derive_samples


def candidates(search) -> tuple[np.ndarray, list | None, int]:
    """(children [n, D], their retrained parameter counts or None, draws): derive_samples
    draws of the final policy; with derive_max_params, derive_samples distinct draws whose
    retrained model (`retrain_model`) has at most that many parameters, drawn
    derive_samples at a time (at most MAX_DRAW_ROUNDS rounds: then fewer, with a warning)."""
    cfg = search.config
    if not cfg.derive_max_params:
        return search.sample_children(cfg.derive_samples)[0].numpy(), None, cfg.derive_samples
    kept, params, drawn = {}, {}, 0
    while len(kept) < cfg.derive_samples and drawn < MAX_DRAW_ROUNDS * cfg.derive_samples:
        for child in search.sample_children(cfg.derive_samples)[0].numpy():
            drawn += 1
            text = search.space.to_string(child)
            if text not in params:
                params[text] = int(retrain_model(search, child, seed=False).count_params())
            if params[text] <= cfg.derive_max_params and len(kept) < cfg.derive_samples:
                kept.setdefault(text, child)
    width = cfg.retrain.width or cfg.width
    if not kept:
        raise ValueError(
            f"derive_max_params={cfg.derive_max_params}: none of {drawn} children drawn from "
            f"the final policy has at most that many parameters at retrain width {width}; "
            f"raise --derive_max_params or lower --retrain_width")
    if len(kept) < cfg.derive_samples:
        log.warning("derive_max_params=%d: only %d of %d draws fit; deriving from those",
                    cfg.derive_max_params, len(kept), drawn)
    return np.stack(list(kept.values())), [params[t] for t in kept], drawn


def child_hyperparameters(search, child) -> tuple[dict, dict]:
    """(searched, retrain hyperparameters) of `child`: the policy's medians given its
    architecture; the retrain's SGD gets the L2 coefficient λ as Keras's decoupled
    weight_decay 2λ/(1 − μ) (the same decay under momentum μ); per-layer or per-tensor λ_g
    stay the L2 terms λ_g‖W‖² of the search's loss ("l2_per_layer" / "l2_per_tensor":
    {key: λ_g}, decay_groups.py)."""
    cfg = search.config
    searched = search.controller.medians(child) if cfg.continuous else {}
    hyperparameters = search.space.hyperparameters(child) | searched
    if "weight_decay" in searched:
        momentum = searched.get("momentum", cfg.momentum)
        hyperparameters["weight_decay"] = 2 * searched["weight_decay"] / (1 - momentum)
    if cfg.weight_decay_per in RESULT_KEYS:  # the search's own L2 per group, no decoupled decay
        hyperparameters["weight_decay"] = 0.0
        hyperparameters[RESULT_KEYS[cfg.weight_decay_per]] = {
            g: searched[decision_name(g)]
            for g in group_keys(cfg.weight_decay_per, cfg.num_layers, cfg.ops)}
    if searched and "momentum" not in searched:
        hyperparameters["momentum"] = cfg.momentum
    return searched, hyperparameters


def retrain_model(search, child, seed: bool = True) -> keras.Model:
    """`child` as the retrain builds it: from scratch, at the retrain's width, dropout and
    (micro) cells per stage and drop-path, initialized from the search's seed (seed=False:
    leaves the global seed alone, for a model that is only counted)."""
    cfg = search.config
    if seed:
        keras.utils.set_random_seed(cfg.seed)
    return search.supernet.child_model(child, inherit_weights=False, width=cfg.retrain.width,
                                       dropout=cfg.retrain.dropout,
                                       **cfg.retrain.micro_kwargs())


def proxy_val_accuracy(search, child) -> float:
    """Validation accuracy of `child` after derive_proxy_epochs epochs of the retrain
    (its optimizer, schedule over those epochs, and hyperparameters)."""
    proxy = dataclasses.replace(search.config.retrain, epochs=search.config.derive_proxy_epochs,
                                include_val=False)
    model = retrain_model(search, child)
    return retrain_lib.train(model, search.splits, proxy,
                             child_hyperparameters(search, child)[1])["val_accuracy"]


def response_summary(response: str, history: list) -> dict:
    """Means over the epochs of the response logs (each over the epochs that logged it)."""
    keys = dict.fromkeys(k for h in history for k in h if k.startswith("response/"))
    return {"response": response, **{
        k.split("/", 1)[1]: float(np.mean([h[k] for h in history if k in h])) for k in keys}}


def retrain(search, derived: dict, history: list, stamp: dict) -> dict:
    """Trains the derived child from scratch (resuming its last finished epoch), writes
    model.keras and result.json stamped with `stamp`; returns the result."""
    cfg, run_dir = search.config, search.run_dir
    model = retrain_model(search, search.space.parse(derived["child"]))
    resume = checkpoints.EpochCheckpoint(run_dir.file("retrain_checkpoints"), stamp)
    metrics = retrain_lib.train(model, search.splits, cfg.retrain, derived["hyperparameters"],
                                verbose=2 if search.verbose else 0, callbacks=[resume])
    write_stamped(run_dir.file("model.keras"), lambda p: files.save_model(model, p), stamp)
    result = {
        "dataset": cfg.dataset, "seed": cfg.seed,
        "architecture": derived["child"],
        "layers": derived["architecture"],
        "hyperparameters": derived["hyperparameters"] | {
            "retrain": dataclasses.asdict(cfg.retrain)},
        "optimizer_hyperparameters": derived["searched_hyperparameters"],
        "val_accuracy": metrics["val_accuracy"],
        "test_accuracy": metrics["test_accuracy"],
        **{k: metrics[k] for k in ("test_perplexity",) if k in metrics},
        "shared_weights_val_accuracy": derived["shared_weights_val_accuracy"],
        **{k: derived[k] for k in ("proxy_val_accuracies", "derive_params", "derive_draws")
           if k in derived},
        "search_seconds": float(search.elapsed.numpy()),
        "train_seconds": metrics["train_seconds"],
        "retrain_resumed_after_epoch": resume.resumed_from,
        "epochs": len(history),
        "skipped_steps": int(search.shared.skipped_steps.numpy()),
        "params": int(model.count_params()),
        "response": response_summary(cfg.response, history),
        "history": history,
        "config": cfg.to_json(),
    }
    write_json_stamped(run_dir.file("result.json"), result, stamp)
    resume.delete()
    return result
