"""Notebooks exported as HTML that show their maths without a network.

nbconvert's HTML leaves a notebook's markdown maths ($...$, $$...$$) to MathJax, loaded from a
CDN: opened offline, the page shows raw LaTeX. `TypesetMath` is an nbconvert preprocessor that
replaces each span with an SVG picture typeset by matplotlib's mathtext (as `Math` objects
carry for code outputs), leaving the spans mathtext cannot parse to MathJax:

    jupyter nbconvert --to html --Exporter.preprocessors=symgrad.viz.offline.TypesetMath \\
        notebooks/01_backprop_walkthrough.ipynb

In: a notebook (nbformat). Out: the same notebook, its markdown cells' maths as <img> tags
holding SVG data. Needs the `notebooks` extra (nbconvert, matplotlib).
"""
from __future__ import annotations

import base64
import re

from nbconvert.preprocessors import Preprocessor

from .maths import mathtext_svg

# code spans (left alone), display maths, inline maths (one line, no escaped dollar)
_SPANS = re.compile(r"(`[^`]*`)|\$\$(.+?)\$\$|(?<![\\$])\$([^$\n]+?)\$", re.S)


def typeset_markdown(text):
    """`text` (markdown) with its maths spans as SVG images; returns (text, typeset, left):
    how many spans became pictures and how many were left as LaTeX."""
    counts = [0, 0]

    def picture(match):
        code, display, inline = match.groups()
        if code is not None:
            return code
        latex = (display if display is not None else inline).strip()
        svg = mathtext_svg(latex)
        if svg is None:
            counts[1] += 1
            return match.group(0)
        counts[0] += 1
        data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
        alt = latex.replace('"', "&quot;")
        image = f'<img src="data:image/svg+xml;base64,{data}" alt="{alt}" style="vertical-align:middle">'
        return f'<div style="text-align:center">{image}</div>' if display is not None else image

    return _SPANS.sub(picture, text), counts[0], counts[1]


class TypesetMath(Preprocessor):
    """The nbconvert preprocessor: markdown maths typeset as SVG (see the module doc)."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown":
            cell.source, typeset, left = typeset_markdown(cell.source)
            counts = resources.setdefault("typeset_math", [0, 0])
            counts[0] += typeset
            counts[1] += left
        return cell, resources
