"""absl flag binaries (thin: flags → library calls). TensorFlow's C++ logs are quieted."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
