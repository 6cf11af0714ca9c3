"""retrain.train: what it trains on."""
import keras
import numpy as np
import pytest

from tf_enas.data import Splits
from tf_enas.retrain import RetrainConfig, train


def _random_labels(seed=0) -> Splits:
    """Gaussian inputs with uniformly random labels: nothing generalizes, so a model is
    right on an example (beyond chance, 1/4) only if it was trained on that example."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 16)).astype("float32")
    y = rng.integers(0, 4, size=200).astype("int32")
    return Splits("random", x[:100], y[:100], x[100:150], y[100:150], x[150:], y[150:], 4)


@pytest.mark.parametrize("include_val", [False, True])
def test_include_val_trains_on_the_validation_set_too(include_val):
    """With include_val the model memorizes the validation examples as it does the
    training ones, takes ceil(150/32) steps per epoch instead of ceil(100/32), and reports
    no validation accuracy; without it the validation set stays at chance."""
    splits = _random_labels()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(256, activation="relu"),
                              keras.layers.Dense(4)])
    config = RetrainConfig(epochs=60, batch_size=32, learning_rate=1e-2, weight_decay=0.0,
                           include_val=include_val)
    metrics = train(model, splits, config)
    memorized = lambda x, y: np.mean(np.argmax(model.predict(x, verbose=0), -1) == y)
    assert memorized(splits.x_train, splits.y_train) > 0.95
    assert int(model.optimizer.iterations) == 60 * (5 if include_val else 4)
    if include_val:
        assert metrics["val_accuracy"] is None
        assert memorized(splits.x_val, splits.y_val) > 0.95
    else:
        assert metrics["val_accuracy"] == pytest.approx(memorized(splits.x_val, splits.y_val))
        assert metrics["val_accuracy"] < 0.5
    assert metrics["test_accuracy"] < 0.5
