"""README.md stays true: its flags reference is the absl definitions rendered (stale → fail;
regenerate with `TF_ENAS_UPDATE_README=1 python -m pytest -q tests/test_readme.py`), the
CI test command is there byte for byte, every path it names exists, its headline numbers
are BENCHMARKS.md's, and the pictures it shows are in the repository."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BEGIN = ("<!-- flags:begin (generated from the absl definitions by tests/test_readme.py; "
         "regenerate: TF_ENAS_UPDATE_README=1 python -m pytest -q tests/test_readme.py) -->")
END = "<!-- flags:end -->"
FLAG_MODULES = ("tf_enas.bin.common_flags", "tf_enas.bin.search")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_flags() -> str:
    """The flags of tf-enas-search (and tf-enas-joint-search, the same binary) as a markdown
    table: flag, default, meaning (with the allowed values of enums and the bounds)."""
    from absl import flags

    import tf_enas.bin.search  # noqa: F401  (defines the flags)

    by_module = flags.FLAGS.flags_by_module_dict()
    rows = ["| flag | default | meaning |", "|---|---|---|"]
    for module in FLAG_MODULES:
        for f in by_module.get(module, []):
            default = f.default
            if isinstance(default, (list, tuple)):
                default = ",".join(map(str, default))
            default = "" if default is None or default == "" else f"`{default}`"
            help_text = re.sub(r"^<[^>]*>: ", "", f.help)  # absl's enum prefix; listed below
            help_text = help_text.replace(";\n    repeat this option to specify a list of values",
                                          "").replace("; repeat this option to specify a list "
                                                      "of values", "")
            values = getattr(f.parser, "enum_values", None)
            if values:
                help_text += " One of: " + ", ".join(values) + "."
            bounds = [f"{name} {getattr(f.parser, attr)}" for attr, name in
                      (("lower_bound", "≥"), ("upper_bound", "≤"))
                      if getattr(f.parser, attr, None) is not None]
            if bounds:
                help_text += " (" + ", ".join(bounds) + ")"
            if type(f).__name__ == "MultiFlag":
                help_text += " Repeat the flag for several values."
            rows.append(f"| `--{f.name}` | {_cell(default)} | {_cell(help_text)} |")
    return "\n".join(rows)


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def test_flags_reference_is_the_absl_definitions():
    text = _readme()
    assert BEGIN in text and END in text, "README.md lost its flags markers"
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    rendered = "\n" + render_flags() + "\n"
    if os.environ.get("TF_ENAS_UPDATE_README") == "1":
        with open(README, "w", encoding="utf-8") as f:
            f.write(text[:start] + rendered + text[stop:])
        text = _readme()
        start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    assert text[start:stop] == rendered, (
        "README.md's flags reference is stale: TF_ENAS_UPDATE_README=1 python -m pytest -q "
        "tests/test_readme.py")


def test_the_two_commands_come_first_and_ci_finds_the_test_command():
    text = _readme()
    test_command = ("pip install -e '.[test]' && TF_CPP_MIN_LOG_LEVEL=2 python -m pytest -q "
                    "-n 2 tests")
    assert test_command in text
    first_block = text[text.index("```bash"):text.index("```", text.index("```bash") + 3)]
    assert "tf-enas-search" in first_block and test_command in first_block


def test_every_path_the_readme_names_exists():
    text = _readme()
    paths = set(re.findall(r"`((?:tf_enas|colab|docs|flags|tests)/[\w./{}, -]*?)`", text))
    paths |= set(re.findall(r"\]\(((?:docs|colab|tf_enas)/[^)#\s]+)\)", text))
    assert len(paths) > 20
    missing = []
    for p in paths:
        if "{" in p:  # tf_enas/response/ {a, b} → each
            head, _, rest = p.partition("{")
            names = [n.strip() for n in rest.rstrip("}").split(",")]
            candidates = [os.path.join(head.strip(), n + ".py") for n in names]
        else:
            candidates = [p.rstrip("/")]
        missing += [c for c in candidates if not os.path.exists(os.path.join(ROOT, c))]
    assert not missing, f"README.md names paths that do not exist: {sorted(missing)}"


def test_headline_numbers_are_benchmarks_numbers():
    text = _readme()
    with open(os.path.join(ROOT, "BENCHMARKS.md"), encoding="utf-8") as f:
        benchmarks = f.read()
    section = text[text.index("## Headline results"):]
    section = section[:section.index("\n## ", 5)]
    rows = [r for r in section.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) >= 5
    for row in rows:
        for number in re.findall(r"\d+\.\d+", row):
            assert number in benchmarks, f"README headline {number} is not in BENCHMARKS.md"


@pytest.mark.parametrize("pattern", [r"!\[[^\]]*\]\(([^)]+\.png)\)"])
def test_pictures_shown_are_committed_files(pattern):
    pictures = re.findall(pattern, _readme())
    assert {os.path.basename(p) for p in pictures} >= {
        "controller.png", "policy.png", "architecture.png", "continuous.png", "children.png"}
    for p in pictures:
        assert os.path.getsize(os.path.join(ROOT, p)) > 5000, p
