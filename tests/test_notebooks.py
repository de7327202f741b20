"""The notebooks in notebooks/ run top to bottom, so they never rot; and the committed files
keep their outputs, so pictures, formulas and tables show on a code-hosting site.

Each notebook runs in a fresh Jupyter kernel of this Python (nbclient), in notebooks/, with
this process's environment (so the same compile cache). Outputs are not written back: the
committed outputs are refreshed by running a notebook in Jupyter and saving it.
"""
import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    errors = [o for cell in notebook.cells for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_keeps_its_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.get("execution_count") for cell in code), "run it before saving"
    kinds = {kind for cell in code for output in cell.get("outputs", [])
             for kind in output.get("data", {})}
    assert kinds & {"image/svg+xml", "image/png", "text/html", "text/latex"}


def test_exported_html_typesets_every_formula_offline():
    # nbconvert leaves markdown maths to MathJax from a CDN; with symgrad's preprocessor every
    # span of every notebook is an SVG picture, and code outputs carry their own SVG (Math)
    from nbconvert import HTMLExporter
    from symgrad.viz.offline import TypesetMath
    total = 0
    for path in NOTEBOOKS:
        exporter = HTMLExporter()
        exporter.register_preprocessor(TypesetMath, enabled=True)
        body, resources = exporter.from_notebook_node(nbformat.read(path, as_version=4))
        typeset, left = resources.get("typeset_math", [0, 0])
        assert left == 0, f"{path.name}: {left} maths spans mathtext cannot typeset"
        total += typeset
        pictures = re.findall(r'<img alt="(?!No description)[^"]*" src="data:image/svg\+xml', body)
        assert len(pictures) == typeset, path.name  # each span an SVG picture, its LaTeX as alt
    assert total >= 40  # the notebooks' markdown holds 41 spans
