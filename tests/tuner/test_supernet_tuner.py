"""SupernetTuner: trials share one supernet's weights; best models are standalone children
that compute what the supernet computes for them; overwrite=False restores the weights."""
import keras
import numpy as np
import pytest

from tf_enas.space import SearchSpace
from tf_enas.tuner import PolicyOracle, SupernetTuner


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 16, 1)).astype("float32")
    y = (x[:, :8, 0].mean(1) > 0).astype("int32")  # learnable: sign of the first half
    return x[:256], y[:256], x[256:], y[256:]


SPACE = SearchSpace(2, ops=("conv3", "avgpool3"), choices={"learning_rate": (0.05, 0.01)})


def _tuner(tmp_path, overwrite=True, max_trials=4):
    return SupernetTuner(SPACE, (16, 1), 2, max_trials=max_trials, width=8, steps_per_trial=5,
                         batch_size=32, warmup_steps=3, directory=str(tmp_path),
                         project_name="sn", overwrite=overwrite)


def test_trials_share_weights_and_best_models_are_the_children(tmp_path, data):
    x, y, xv, yv = data
    tuner = _tuner(tmp_path)
    assert isinstance(tuner.oracle, PolicyOracle)
    start = [w.copy() for w in tuner.supernet.get_weights()]
    tuner.search(x, y, validation_data=(xv, yv), verbose=0)
    trials = [tuner.oracle.trials[t] for t in tuner.oracle.end_order]
    assert len(trials) == 4 and all(t.status == "COMPLETED" for t in trials)
    # one supernet trained across trials: warmup + 5 steps per trial, never re-initialized
    assert int(tuner.steps.numpy()) == 3 + 4 * 5
    assert any(not np.array_equal(a, b) for a, b in zip(start, tuner.supernet.get_weights()))
    for t in trials:
        assert 0.0 <= t.metrics.get_last_value("val_accuracy") <= 1.0
        assert np.isfinite(t.metrics.get_last_value("val_loss"))

    models = tuner.get_best_models(2)
    best = tuner.oracle.get_best_trials(2)
    for model, trial in zip(models, best):
        assert isinstance(model, keras.Model) and model.name == f"child_{trial.trial_id}"
        child = SPACE.child_from_values(trial.hyperparameters.values)
        expected = tuner.supernet(xv, child, training=False).numpy()
        np.testing.assert_allclose(model.predict(xv, verbose=0), expected, atol=1e-5)
        # standalone: only this child's ops (fewer weights than the supernet), evaluable
        assert model.count_params() < tuner.supernet.count_params()
        loss, acc = model.evaluate(xv, yv, verbose=0)
        assert np.isfinite(loss) and 0.0 <= acc <= 1.0

    weights = [w.copy() for w in tuner.supernet.get_weights()]
    resumed = _tuner(tmp_path, overwrite=False, max_trials=5)
    for a, b in zip(weights, resumed.supernet.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(resumed.steps.numpy()) == 23
    resumed.search(x, y, validation_data=(xv, yv), verbose=0)
    assert int(resumed.steps.numpy()) == 28  # one more trial, no second warmup
    assert len(resumed.oracle.trials) == 5
