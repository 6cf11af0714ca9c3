"""tf-enas-joint-search: the same binary as tf-enas-search (kept so that shipped commands
keep working); the joint flagfiles set --continuous, --reward=loss and --response.

    tf-enas-joint-search --flagfile=flags/mnist1d_joint_ift.cfg --output_dir=runs/joint_ift
"""
from tf_enas.bin.search import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    run()
