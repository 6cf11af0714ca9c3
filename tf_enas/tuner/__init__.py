"""keras-tuner integration: an Oracle driven by the policy network (TPE's density-ratio rule
by default, REINFORCE with `PolicyUpdate()`) and a weight-sharing Tuner."""
from tf_enas.tuner.hyperparameter_mapping import HyperParameterMapping
from tf_enas.tuner.policy_oracle import PolicyOracle, PolicyUpdate
from tf_enas.tuner.supernet_tuner import SupernetTuner

__all__ = ["HyperParameterMapping", "PolicyOracle", "PolicyUpdate", "SupernetTuner"]
