"""Hand-designed baselines for the cell spaces, trained by the same retrain harness as a
found child (tf_enas.retrain.train: same splits, optimizer, schedule, epochs; the
defaults are flags/mnist1d_rnn_cell.cfg's retrain: 60 epochs of AdamW at 1e-2, weight
decay 5e-2, and its readout).

    python -m tf_enas.benchmarks.cell_baselines --model=gru --seed=0 --epochs=60

prints one JSON line: test/val accuracy, parameters, seconds.
"""
from __future__ import annotations

import argparse
import json

import keras

from tf_enas import data
from tf_enas.retrain import RetrainConfig, train
from tf_enas.supernet.rnn_cell import READOUT, READOUTS


def gru(input_shape, num_classes: int, width: int = 64, readout: str = READOUT,
        sequence_output: bool = False) -> keras.Model:
    """keras GRU over the sequence, logits from its states read as the cell space's
    classifier reads them (`readout`: "last" h_T, "mean", "flatten" h_1..h_T), or at
    every step (sequence_output: a language model)."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    inp = keras.Input(tuple(input_shape))
    h = keras.layers.GRU(width, return_sequences=sequence_output or readout != "last")(inp)
    if not sequence_output and readout == "mean":
        h = keras.layers.GlobalAveragePooling1D()(h)
    elif not sequence_output and readout == "flatten":
        h = keras.layers.Flatten()(h)
    return keras.Model(inp, keras.layers.Dense(num_classes)(h), name="gru")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["gru"], default="gru")
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--dataset_path", default=None, help="the file of npz, csv and text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--readout", choices=READOUTS, default=READOUT)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--learning_rate", type=float, default=1e-2)
    p.add_argument("--weight_decay", type=float, default=5e-2)
    p.add_argument("--batch_size", type=int, default=RetrainConfig.batch_size)
    args = p.parse_args(argv)
    splits = data.load(args.dataset, args.seed, 0.1, path=args.dataset_path)
    keras.utils.set_random_seed(args.seed)
    model = gru(splits.input_shape, splits.num_classes, args.width, args.readout,
                splits.sequence_targets)
    config = RetrainConfig(epochs=args.epochs, learning_rate=args.learning_rate,
                           weight_decay=args.weight_decay, batch_size=args.batch_size)
    metrics = train(model, splits, config)
    print(json.dumps({"model": args.model, "seed": args.seed, "width": args.width, "readout": args.readout,
                      "epochs": args.epochs, "params": int(model.count_params())} | metrics))


if __name__ == "__main__":
    main()
