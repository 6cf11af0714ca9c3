"""keras-tuner integration: a policy-gradient Oracle and a weight-sharing Tuner."""
from tf_enas.tuner.hyperparameter_mapping import HyperParameterMapping
from tf_enas.tuner.policy_oracle import PolicyOracle
from tf_enas.tuner.supernet_tuner import SupernetTuner

__all__ = ["HyperParameterMapping", "PolicyOracle", "SupernetTuner"]
