"""The package's layers, read from its import statements: data flows one way, nothing imports in a
circle, training never imports the corpus generator, and only ``audio`` reads sound files."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = {".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
           for p in SRC.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """Every midlevel module ``name`` imports, at module level or inside a function (a lazy import is
    still a dependency)."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else []))
            found |= {f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in GRAPH[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_no_module_imports_itself_through_others():
    cycles = sorted(name for name in GRAPH if name in reachable(name))
    assert not cycles, cycles


def test_data_flows_one_way():
    core = ["midlevel.audio", "midlevel.frontend", "midlevel.backbones", "midlevel.model", "midlevel.heads",
            "midlevel.results" if "midlevel.results" in MODULES else "midlevel.model"]
    later = ("midlevel.explain", "midlevel.zoo", "midlevel.export", "midlevel.training", "midlevel.cli",
             "midlevel.datasets")
    for name in core:
        wrong = sorted(d for d in reachable(name) if d.startswith(later))
        assert not wrong, f"{name} reaches {wrong}"


#: the controlled corpora's generators (music, spoken digits, heart sounds)
GENERATORS = ("midlevel.datasets.controlled.", "midlevel.datasets.spoken_digits.", "midlevel.datasets.heart_sounds.")


def test_training_and_inference_never_import_the_corpus_generator():
    for name in MODULES:
        if name.startswith(("midlevel.training", "midlevel.zoo", "midlevel.model", "midlevel.explain",
                            "midlevel.export", "midlevel.evaluation")):
            wrong = sorted(d for d in reachable(name) if d.startswith(GENERATORS))
            assert not wrong, f"{name} reaches {wrong}"


def test_only_audio_reads_sound_files():
    readers = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if any(call in text for call in ("sf.read(", "sf.info(", "soundfile.read(", "librosa.load(", "torchaudio.load(")):
            readers.append(name)
    # the generators read back what their own codec round trip, FluidSynth and the speech synthesisers wrote
    assert sorted(r for r in readers if not r.startswith(GENERATORS)) == ["midlevel.audio"]


def test_argparse_lives_in_the_cli_only():
    users = sorted(name for name, path in MODULES.items() if "argparse" in third_party_imports(path))
    assert users == ["midlevel.cli"], users


def third_party_imports(path):
    """Top-level package names a file imports, at module level or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names
