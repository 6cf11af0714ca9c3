"""tf_enas.hypergrad imports nothing else from tf_enas, and exports what it says."""
import ast
import pathlib

import tf_enas.hypergrad as hypergrad

PACKAGE = pathlib.Path(hypergrad.__file__).parent


def test_hypergrad_imports_only_itself_from_tf_enas():
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] == "tf_enas" and not n.startswith("tf_enas.hypergrad")]
    assert not offenders, offenders


def test_public_api_is_exported():
    for name in hypergrad.__all__:
        assert callable(getattr(hypergrad, name)), name
    for name in ("hvp", "conjugate_gradient", "neumann", "implicit_hypergradient",
                 "unrolled_hypergradient", "forward_hypergradient", "functional_loss"):
        assert name in hypergrad.__all__
