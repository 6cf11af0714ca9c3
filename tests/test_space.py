"""SearchSpace: the child encoding, its text form, and its errors."""
import itertools

import numpy as np
import pytest

from tf_enas.space import OPS, SearchSpace


def space():
    return SearchSpace(4, choices={"learning_rate": (0.01, 0.05), "weight_decay": (1e-4, 0.0)})


def test_layout_and_size_by_enumeration():
    s = SearchSpace(3, ops=("conv3", "maxpool3"), choices={"lr": (0.1, 0.2, 0.3)})
    # 3 ops decisions, 0 + 1 + 2 skip bits, one choice
    assert [d.kind for d in s.decisions] == ["op", "op", "skip", "op", "skip", "skip", "choice"]
    children = list(itertools.product(*[range(d.num_values) for d in s.decisions]))
    assert s.size == len(children) == 2 ** 3 * 2 ** 3 * 3
    texts = {s.to_string(np.array(c, np.int32)) for c in children}
    assert len(texts) == s.size  # the text form is injective


def test_text_round_trip_and_readable_form():
    s = space()
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = s.random(rng)
        np.testing.assert_array_equal(s.parse(s.to_string(c)), c)
    c = s.parse("conv3 | sepconv5+0 | maxpool3+0,1 | avgpool3+2 ; learning_rate=0.05 ; "
                "weight_decay=0")
    assert s.architecture(c)[2] == {"op": "maxpool3", "skips": [0, 1]}
    assert s.hyperparameters(c) == {"learning_rate": 0.05, "weight_decay": 0.0}
    np.testing.assert_array_equal(s.skip_matrix(c)[:, :3], [[0, 0, 0], [1, 0, 0], [1, 1, 0],
                                                            [0, 0, 1]])


@pytest.mark.parametrize("text, message", [
    ("conv3 | conv3 | conv3 ; learning_rate=0.05 ; weight_decay=0", "has 4 layers"),
    ("conv7 | conv3 | conv3 | conv3 ; learning_rate=0.05 ; weight_decay=0", "conv7"),
    ("conv3 | conv3+1 | conv3 | conv3 ; learning_rate=0.05 ; weight_decay=0", "earlier layer"),
    ("conv3 | conv3 | conv3 | conv3 ; learning_rate=0.5 ; weight_decay=0", "learning_rate must"),
    ("conv3 | conv3 | conv3 | conv3 ; learning_rate=0.05", "missing values"),
    ("conv3 | conv3 | conv3 | conv3 ; lr=0.05 ; weight_decay=0", "'lr=0.05'"),
])
def test_parse_errors_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        space().parse(text)


def test_validate_and_constructor_errors():
    s = space()
    with pytest.raises(ValueError, match="decisions"):
        s.validate(np.zeros(3, np.int32))
    bad = np.zeros(len(s), np.int32)
    bad[0] = len(OPS)
    with pytest.raises(ValueError, match="layer_0/op"):
        s.validate(bad)
    with pytest.raises(ValueError, match="subset"):
        SearchSpace(2, ops=("conv9",))


def test_keras_tuner_round_trip():
    s = space()
    hp = s.to_hyperparameters()
    c = s.random(np.random.default_rng(1))
    values = {d.name: d.values[i] for d, i in zip(s.decisions, c)}
    np.testing.assert_array_equal(s.child_from_values(values), c)
    assert set(hp.values) == {d.name for d in s.decisions}
