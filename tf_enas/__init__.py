"""tf_enas: joint architecture + optimizer-hyperparameter search with response gradients."""
__version__ = "0.1.0"
