"""Import hygiene: inference runs on the core dependencies alone, optional ones are imported by the features
that need them (and a missing one names its extra in one line), library modules leave matplotlib's backend
alone, and every refusal of ours is a ``MidlevelError``."""

import ast
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import midlevel
from midlevel.errors import MidlevelError, MissingExtraError

SRC = Path(__file__).resolve().parents[1] / "src" / "midlevel"

#: modules of the optional extras: none of them may be loaded by `import midlevel` or by inference
HEAVY = ("matplotlib", "shap", "captum", "onnx", "onnxruntime", "onnxscript", "music21", "pretty_midi", "sklearn",
         "librosa", "tqdm", "scipy", "yaml", "pedalboard")

#: the core dependencies, imported first: what *they* load (torch imports tqdm when it is installed) is not ours
PRELUDE = """
import contextlib, io, json, sys
import numpy, pandas, safetensors, soundfile, soxr, torch, torchaudio
HEAVY = {heavy!r}
before = set(sys.modules)

def loaded_by_us():
    return sorted(m for m in set(sys.modules) - before if m.split(".")[0] in HEAVY)
"""


def run_python(code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter (sys.modules starts empty); its stdout."""
    script = textwrap.dedent(PRELUDE.format(heavy=HEAVY)) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_import_midlevel_loads_no_optional_module(tmp_path):
    out = run_python("""
        import midlevel
        print(json.dumps(loaded_by_us()))
    """, tmp_path)
    assert json.loads(out.splitlines()[-1]) == []


def test_predict_explain_and_models_load_no_optional_module(tmp_path):
    out = run_python("""
        from midlevel.cli import main
        codes = {}
        for argv in (["predict", "--json"], ["explain"], ["models"]):
            with contextlib.redirect_stdout(io.StringIO()):
                codes[argv[0]] = main(argv)
        print(json.dumps({"codes": codes, "loaded": loaded_by_us()}))
    """, tmp_path)
    result = json.loads(out.splitlines()[-1])
    assert result["codes"] == {"predict": 0, "explain": 0, "models": 0}
    assert result["loaded"] == []


def module_level_statements(tree: ast.Module):
    """Every node that runs when the module is imported: not inside a function or lambda (class bodies run)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def matplotlib_use_calls(source: str) -> list[int]:
    """Line numbers of module-level ``matplotlib.use(...)`` calls (any alias, or ``from matplotlib import use``)."""
    tree = ast.parse(source)
    modules, functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "matplotlib"}
        elif isinstance(node, ast.ImportFrom) and node.module == "matplotlib":
            functions |= {a.asname or a.name for a in node.names if a.name == "use"}
    lines = []
    for node in module_level_statements(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "use" and isinstance(f.value, ast.Name)
                    and f.value.id in modules) or (isinstance(f, ast.Name) and f.id in functions):
                lines.append(node.lineno)
    return lines


def test_the_matplotlib_use_check_finds_a_call():
    assert matplotlib_use_calls("import matplotlib\nmatplotlib.use('Agg')\n") == [2]
    assert matplotlib_use_calls("import matplotlib as mpl\nif True:\n    mpl.use('Agg')\n") == [3]
    assert matplotlib_use_calls("from matplotlib import use\nuse('Agg')\n") == [2]
    assert matplotlib_use_calls("import matplotlib\ndef f():\n    matplotlib.use('Agg')\n") == []


def test_no_library_module_sets_the_matplotlib_backend_at_import():
    offenders = {str(p.relative_to(SRC)): lines for p in sorted(SRC.rglob("*.py"))
                 if (lines := matplotlib_use_calls(p.read_text(encoding="utf-8")))}
    assert not offenders, f"matplotlib.use(...) at import in {offenders}"


def error_classes() -> dict[str, type]:
    """Every class named ``...Error`` defined in the package, imported from its module."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(("midlevel", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                found[f"{module}.{node.name}"] = getattr(importlib.import_module(module), node.name)
    return found


def test_every_error_class_is_a_midlevel_error():
    classes = error_classes()
    named = {"AudioError", "ModelLoadError", "ConfigError", "DatasetError", "ExportError", "FinetuneError",
             "CorpusBuildError", "RenderDependencyError", "MissingExtraError"}
    assert named <= {name.rsplit(".", 1)[1] for name in classes}
    wrong = sorted(name for name, cls in classes.items() if cls is not MidlevelError and not issubclass(cls, MidlevelError))
    assert not wrong, f"not MidlevelError subclasses: {wrong}"
    assert midlevel.MidlevelError is MidlevelError


def test_error_classes_keep_their_builtin_bases():
    """``except ValueError`` (and ``RuntimeError``) around our calls keeps working."""
    classes = {name.rsplit(".", 1)[1]: cls for name, cls in error_classes().items()}
    for name in ("AudioError", "ModelLoadError", "ConfigError", "DatasetError", "ExportError", "FinetuneError"):
        assert issubclass(classes[name], ValueError), name
    for name in ("CorpusBuildError", "RenderDependencyError"):
        assert issubclass(classes[name], RuntimeError), name
    assert issubclass(MissingExtraError, ImportError)


def test_the_cli_repeats_the_finetune_modes():
    from midlevel.cli import FINETUNE_MODES
    from midlevel.training.finetune import MODES

    assert FINETUNE_MODES == MODES


#: (blocked module, command, the extra its message must name); each runs with sys.modules[module] = None
MISSING = [
    ("sklearn", ["train", "--corpus", "{tmp}", "--out", "{tmp}/run"], "train"),
    ("scipy", ["finetune", "--base", "{default}", "--annotations", "{tmp}/a.csv", "--audio-dir", "{tmp}",
               "--out", "{tmp}/ft"], "train"),
    ("music21", ["corpus", "build", "--out", "{tmp}/corpus", "--n", "1"], "corpus"),
    ("shap", ["explain", "--baseline", "shap"], "shap"),
    ("matplotlib", ["explain", "--plot", "{tmp}/p.png"], "report"),
    ("captum", ["explain", "--report", "{tmp}/r.html", "--format", "png"], "report"),
    ("captum", ["explain", "--report", "{tmp}/r.html", "--map-method", "integrated_gradients"], "report"),
    ("yaml", ["explain", "--report", "{tmp}/r.html"], "report"),  # the interactive page reads the model card
    ("onnx", ["export-onnx", "{default}", "{tmp}/m.onnx"], "onnx"),
    ("onnxscript", ["export-onnx", "{default}", "{tmp}/m.onnx"], "onnx"),
]


@pytest.fixture(scope="module")
def missing_extra_runs(tmp_path_factory):
    """Every case of ``MISSING`` in one interpreter, in order, each with its module blocked (never imported before
    its case: each case only gets as far as the check), plus ``export_onnx`` called directly with onnx blocked."""
    tmp = tmp_path_factory.mktemp("missing")
    out = run_python(f"""
        from midlevel.cli import main
        from midlevel.zoo import DEFAULT_MODEL
        cases, results = {MISSING!r}, []
        for module, argv, extra in cases:
            assert module not in sys.modules, module
            sys.modules[module] = None
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = main([a.format(default=DEFAULT_MODEL, tmp={str(tmp)!r}) for a in argv])
            del sys.modules[module]
            results.append({{"module": module, "code": code, "stderr": err.getvalue()}})
        import midlevel
        from midlevel.errors import MissingExtraError
        from midlevel.export import export_onnx
        sys.modules["onnx"] = None
        try:
            export_onnx(midlevel.load(), {str(tmp / "direct.onnx")!r})
            direct = None
        except MissingExtraError as exc:
            direct = {{"name": exc.name, "message": str(exc)}}
        print(json.dumps({{"cli": results, "direct": direct}}))
    """, tmp)
    return json.loads(out.splitlines()[-1])


@pytest.mark.parametrize("case", range(len(MISSING)), ids=[f"{m}-{' '.join(a[:1])}" for m, a, _ in MISSING])
def test_a_missing_extra_is_one_line_naming_it(missing_extra_runs, case):
    module, argv, extra = MISSING[case]
    run = missing_extra_runs["cli"][case]
    assert run["module"] == module and run["code"] == 2, run
    lines = [line for line in run["stderr"].splitlines() if "extra" in line]
    assert len(lines) == 1, run["stderr"]
    assert lines[0].startswith("midlevel: error: ") and lines[0].endswith(
        f"needs the '{extra}' extra: pip install 'midlevel[{extra}]'"), lines[0]
    assert "Traceback" not in run["stderr"]


def test_export_onnx_without_onnx_raises_missing_extra(missing_extra_runs):
    direct = missing_extra_runs["direct"]
    assert direct == {"name": "onnx", "message": "ONNX export needs the 'onnx' extra: pip install 'midlevel[onnx]'"}
