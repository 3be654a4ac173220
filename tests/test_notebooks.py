"""The committed notebooks: clean, parameterised, Colab-ready, and fail fast on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks_and_all_are_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {ch["file"] for part in toc["parts"] for ch in part["chapters"]}
    assert NOTEBOOKS
    for nb in NOTEBOOKS:
        assert f"book/{nb.stem}" in files, f"{nb.name} is not in _toc.yml"


def test_committed_notebooks_have_no_outputs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "nbclean.py"), "--check", *map(str, NOTEBOOKS)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    for path in NOTEBOOKS:
        for cell in code_cells(json.loads(path.read_text())):
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_and_colab_cell(path):
    cells = code_cells(json.loads(path.read_text()))
    colab = source(cells[0])
    assert 'if "google.colab" in sys.modules:' in colab and "%pip install" in colab
    params = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    text = source(params[0])
    for name in ("SCALE", "SEED", "DEVICE"):
        assert f"{name} = " in text
    assert 'SCALE = "auto"' in text, "the default must be safe everywhere"


def test_colab_cell_does_nothing_outside_colab():
    from IPython.core.inputtransformer2 import TransformerManager

    cell = source(code_cells(json.loads(NOTEBOOKS[0].read_text()))[0])
    code = TransformerManager().transform_cell(cell)
    calls = []
    namespace = {
        "get_ipython": lambda: type("IP", (), {"run_line_magic": lambda *a: calls.append(a)})()
    }
    exec(compile(code, "colab-cell", "exec"), namespace)
    assert calls == []


def test_papermill_bad_parameter_fails_fast_with_its_message(tmp_path):
    pm = pytest.importorskip("papermill")
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(
            str(ROOT / "book" / "toy_model.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"SCALE": "huge"}, kernel_name="python3", progress_bar=False,
            cwd=str(ROOT / "book"),
        )  # fmt: skip
    assert err.value.ename == "ConfigError"
    assert (
        "SCALE must be one of 'auto', 'ci', 'laptop', 'gpu', 'paper'; got 'huge'"
        in err.value.evalue
    )
