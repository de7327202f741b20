"""Formulas: the LaTeX of an elementwise body, of a node, and of a derivative.

In: nodes, and optional readable names for some of them ({z: "z", labels: "p"}).
Out: `Math` objects, shown as typeset LaTeX in notebooks (`_repr_latex_`) and as text in
terminals. For example `derivative(loss, z, names={loss: "L", z: "z", y: "p"})` shows
∂L/∂z = (softmax(z) − p)/N once the simplifier has found the q − p identity.

How a node becomes a formula: elementwise nodes contribute their SymPy body, with the
operand symbols x0, x1, ... replaced by their inputs' formulas (a few levels deep); shape-only
ops (broadcast_to, reshape, distribution, stop_gradient, cast) are transparent; other ops are
atoms printed as functions (softmax(z), x^T W); leaves print as their names; the size of the
batch axis prints as N. SymPy only ever sees scalar symbols.
"""
from __future__ import annotations

import io
import math
import re

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from ..core.autodiff import gradients
from ..core.dims import is_known, text as dim_text
from ..core.graph import is_named_leaf
from ..core.ops import OPS, elementwise_body, elementwise_derivative
from ..core.scalar import X, Y, number
from ..core.simplify import simplify as simplify_graph
from .describe import _BodyPrinter, number_text, operand_names, value_keys as _value_keys

FUNCTION_NAMES = {"log_softmax": r"\log\operatorname{softmax}", "logsumexp": r"\operatorname{logsumexp}"}


class Math:
    """A formula: LaTeX for notebooks, `text` for terminals, and (with matplotlib) an SVG
    picture typeset by matplotlib's mathtext, so that it shows in exported HTML opened
    without a network (which has no MathJax to typeset LaTeX)."""

    def __init__(self, latex, text=None):
        self.latex = latex
        self.text = text or latex
        self._svg = None

    def _repr_latex_(self):
        return f"$\\displaystyle {self.latex}$"

    @property
    def svg(self):
        """The formula typeset by mathtext as an SVG document; "" without matplotlib, or for
        LaTeX mathtext does not know (cases). Drawn once."""
        if self._svg is None:
            self._svg = mathtext_svg(self.latex) or ""
        return self._svg

    def _repr_html_(self):
        """The formula as inline SVG; None (the notebook then typesets the LaTeX) where there
        is no picture."""
        return f'<div style="margin:4px 0">{self.svg}</div>' if self.svg else None

    def save(self, path):
        """Write the formula as an SVG file (needs matplotlib)."""
        if not self.svg:
            raise ValueError("Math.save: matplotlib is not installed, or its mathtext cannot "
                             "typeset this formula; .latex holds the LaTeX")
        with open(path, "w", encoding="utf-8") as out:
            out.write(self.svg)

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"Math({self.text})"


def mathtext_svg(latex):
    """`latex` typeset by matplotlib's mathtext as an SVG document (text drawn as paths, so
    no font is needed to view it), or None."""
    try:  # an optional extra (plot, notebooks): formulas fall back to LaTeX without it
        import matplotlib
        from matplotlib import mathtext
        from matplotlib.font_manager import FontProperties
    except ImportError:
        return None
    out = io.BytesIO()
    try:
        with matplotlib.rc_context({"mathtext.fontset": "cm", "svg.fonttype": "path",
                                    "savefig.transparent": True}):
            mathtext.math_to_image(f"${latex}$", out, prop=FontProperties(size=13), format="svg")
    except ValueError:  # LaTeX that mathtext cannot parse
        return None
    text = out.getvalue().decode("utf-8")
    # without the metadata (it holds the time of drawing): the same formula, the same picture
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text[text.index("<svg"):], flags=re.S)


class _Printer(LatexPrinter):
    """SymPy's LaTeX, plus our scalar functions ([a > b], Iverson's bracket; cases), and sums
    written with their positive terms first (softmax(z) - p, not -p + softmax(z))."""

    def _print_Float(self, e):
        mantissa, _, exponent = number_text(e).partition("e")
        return mantissa + (rf" \cdot 10^{{{int(exponent)}}}" if exponent else "")

    def _print_gt(self, e):
        return rf"\left[{self._print(e.args[0])} > {self._print(e.args[1])}\right]"

    def _print_eq(self, e):
        return rf"\left[{self._print(e.args[0])} = {self._print(e.args[1])}\right]"

    def _print_select(self, e):
        c, a, b = e.args
        condition = (rf"{self._print(c.args[0])} > {self._print(c.args[1])}"
                     if type(c).__name__ == "gt" else rf"{self._print(c)} \neq 0")
        return (rf"\begin{{cases}} {self._print(a)} & {condition} \\ "
                rf"{self._print(b)} & \text{{otherwise}} \end{{cases}}")

    def _print_Add(self, expr, order=None):
        terms = sorted(self._as_ordered_terms(expr, order=order),
                       key=lambda t: t.could_extract_minus_sign())
        return super()._print_Add(sympy.Add(*terms, evaluate=False), order="none")

    def _print_Mul(self, expr):
        return _hadamard(self, expr, r" \odot ", super()._print_Mul)

    def parenthesize(self, item, level, *args, **kwargs):
        if _wraps(self, item, level):  # x W as a factor or a power's base: (x W)^2
            return rf"\left({self._print(item)}\right)"
        return super().parenthesize(item, level, *args, **kwargs)


def _wraps(printer, item, level):
    """Whether `item` is a matrix product (printed as several terms) where it binds as one
    operand of a product, a quotient or a power, which must then be parenthesised."""
    return item in getattr(printer, "compound", ()) and level >= PRECEDENCE["Mul"]


def _hadamard(printer, expr, symbol, plain_mul):
    """A product of two or more tensors is elementwise: written with ⊙, so that it is not
    read as a matrix product; scalar factors (numbers, N) stay in front."""
    tensors = getattr(printer, "tensors", ())
    factors = expr.as_ordered_factors()
    tensor_factors = [f for f in factors if f.free_symbols & tensors]
    if len(tensor_factors) < 2:
        return plain_mul(expr)
    scalar = sympy.Mul(*[f for f in factors if not f.free_symbols & tensors])

    def factor(f):
        return printer.parenthesize(f, PRECEDENCE["Mul"], strict=True)
    text = symbol.join(factor(f) for f in tensor_factors)
    if scalar == 1:
        return text
    if scalar == -1:
        return "- " + text
    return printer.parenthesize(scalar, PRECEDENCE["Mul"]) + " " + text


class _TextPrinter(StrPrinter):
    """The same, as text for terminals."""

    def _print_Symbol(self, e):
        return self._settings.get("atoms", {}).get(e, e.name)

    def parenthesize(self, item, level, *args, **kwargs):
        if _wraps(self, item, level):  # x @ W as a factor or a power's base: (x @ W)^2
            return f"({self._print(item)})"
        return super().parenthesize(item, level, *args, **kwargs)

    _print_gt = _BodyPrinter._print_gt
    _print_eq = _BodyPrinter._print_eq
    _print_select = _BodyPrinter._print_select
    _print_Float = _BodyPrinter._print_Float

    def _print_Add(self, expr, order=None):
        terms = sorted(self._as_ordered_terms(expr, order=order),
                       key=lambda t: t.could_extract_minus_sign())
        return super()._print_Add(sympy.Add(*terms, evaluate=False), order="none")

    def _print_Mul(self, expr):
        return _hadamard(self, expr, " ⊙ ", super()._print_Mul)


def _tex(expr, symbol_names, tensors=frozenset(), compound=frozenset()):
    printer = _Printer({"symbol_names": symbol_names})
    printer.tensors, printer.compound = tensors, compound
    return printer.doprint(expr)


def _text(expr, atoms, tensors=frozenset(), compound=frozenset()):
    printer = _TextPrinter()
    printer._settings["atoms"] = atoms
    printer.tensors, printer.compound = tensors, compound
    return printer.doprint(expr).replace("**", "^").replace("*", "·")


class _Formulas:
    """Builds SymPy expressions for nodes; atoms are symbols whose LaTeX and text are kept
    aside, so SymPy orders and simplifies around them."""

    def __init__(self, names, roots=(), tidy=False):
        self.tidy = tidy
        names = dict(names or {})
        keys = _value_keys(list(names) + list(roots))
        self.names = {keys[n]: tex for n, tex in names.items()}
        self.keys = keys
        self.symbol_names = {}   # Symbol -> LaTeX
        self.symbol_text = {}    # Symbol -> text
        self.tensors = set()     # the atoms that are not scalars
        self.compound = set()    # atoms printed as several terms (matrix products)
        self.cache = {}
        self.sizes = {}          # a call-time size's text -> the letter it is written as

    def size_letter(self, dim):
        """N for the first size known only at call time (a batch size), then M, K, J; the
        size's own name (x.0: axis 0 of x) beyond those."""
        key = dim_text(dim)
        if key not in self.sizes:
            letters = "NMKJ"
            self.sizes[key] = letters[len(self.sizes)] if len(self.sizes) < len(letters) else key
        return self.sizes[key]

    def atom(self, node, tex, text):
        symbol = sympy.Symbol(f"n{node.serial}", real=True)
        self.symbol_names[symbol] = tex
        self.symbol_text[symbol] = text
        if node.shape != ():
            self.tensors.add(symbol)
        return symbol

    def tex(self, expr):
        return _tex(expr, self.symbol_names, self.tensors, self.compound)

    def text(self, expr):
        return _text(expr, self.symbol_text, self.tensors, self.compound)

    def expr(self, node, depth):
        key = (node, depth)
        if key not in self.cache:
            self.cache[key] = self._expr(node, depth)
        return self.cache[key]

    def _expr(self, node, depth):
        name = self.names.get(self.keys.get(node, node))
        if name is not None:
            return self.atom(node, name, _plain_name(name))
        if is_named_leaf(node):
            return self.atom(node, *_leaf_name(node.name or node.op))
        if node.op == "constant":
            value = node.attrs["value"]
            if node.shape == () or (value.size and (value == value.flat[0]).all()):
                return number(value.flat[0])  # a filled array reads as its one value
            return self.atom(node, rf"C_{{{node.serial}}}", f"C{node.serial}")
        if OPS[node.op].transparent:  # a broadcast, reshape, cast, ...: shown as its input
            return self.expr(node.inputs[0], depth)
        if depth <= 0:
            return self.atom(node, rf"\mathtt{{\#{node.serial}}}", f"#{node.serial}")
        if OPS[node.op].body is not None:
            body = elementwise_body(node)
            return body.xreplace({X[k]: self.expr(i, depth - 1) for k, i in enumerate(node.inputs)})
        tex, text = self._function(node, depth)
        atom = self.atom(node, tex, text)
        # printed as several terms: parenthesised as an operand, x/(2·N), (x @ W)^2
        if node.op == "matmul" or (node.op == "size" and "·" in text):
            self.compound.add(atom)
        return atom

    def _argument(self, node, depth, wrap=True):
        expr = self.expr(node, depth - 1)
        if self.tidy:
            expr = _tidy(expr)
        tex, text = self.tex(expr), self.text(expr)
        if wrap and not (expr.is_Symbol or expr.is_Number):
            tex, text = rf"\left({tex}\right)", f"({text})"
        return tex, text

    def _function(self, node, depth):
        """(LaTeX, text) of an op that is not elementwise, as a function of its inputs."""
        op = node.op
        if op == "size":  # the count of a mean over sizes known only at call time
            known = math.prod(int(d) for d in node.attrs["sizes"] if is_known(d))
            letters = [self.size_letter(d) for d in node.attrs["sizes"] if not is_known(d)]
            factors = ([str(known)] if known != 1 or not letters else []) + letters
            return " ".join(factors), "·".join(factors)
        if op == "matmul":
            (ta, xa), (tb, xb) = (self._argument(i, depth) for i in node.inputs)
            return f"{ta} {tb}", f"{xa} @ {xb}"
        if op == "transpose":
            tex, text = self._argument(node.inputs[0], depth)
            return tex + r"^{\top}", text + "ᵀ"
        args = [self._argument(i, depth, wrap=False) for i in node.inputs]
        tex_name = FUNCTION_NAMES.get(op, rf"\operatorname{{{op}}}".replace("_", r"\_"))
        text_name = op
        axis = node.attrs.get("axis")
        if axis is not None and node.ndim < node.inputs[0].ndim:  # a reduction: sum_1(x)
            tex_name += rf"_{{{axis}}}"
            text_name += f"_{axis}"
        return (rf"{tex_name}\left({', '.join(t for t, _ in args)}\right)",
                f"{text_name}({', '.join(x for _, x in args)})")


def _tidy(expr):
    """A cosmetic rewrite for reading (never for computing): SymPy's simplify, on small
    expressions only, kept when it is shorter."""
    if sympy.count_ops(expr) > 40:
        return expr
    try:
        tidy = sympy.simplify(expr)
    except Exception:  # display only: a failed tidy keeps the expression as it is
        return expr
    return tidy if sympy.count_ops(tidy) <= sympy.count_ops(expr) else expr


def formula(node, names=None, depth=4, tidy=True):
    """The formula of `node` (LaTeX, text) with inputs inlined `depth` levels up."""
    formulas = _Formulas(names, [node], tidy)
    expr = formulas.expr(node, depth)
    if tidy:
        expr = _tidy(expr)
    return formulas.tex(expr), formulas.text(expr)


def latex(node, names=None, depth=4):
    """The formula computed by `node` as Math (see the module doc). depth=1: the op alone
    over its inputs' names."""
    tex, text = formula(node, names, depth)
    return Math(tex, text)


def body(node, names=None):
    """The elementwise body of `node`, over its direct inputs (named, or a, b, c...)."""
    if OPS[node.op].body is None:
        raise ValueError(f"body: {node.op} is not an elementwise op")
    names = dict(names or {})
    letters = operand_names(node)
    symbols = {X[k]: sympy.Symbol(names.get(i, letters[k]), real=True) for k, i in enumerate(node.inputs)}
    expr = elementwise_body(node).xreplace(symbols)
    return Math(_tex(expr, {}), sympy.sstr(expr))


def op_derivatives(node, names=None):
    """∂node/∂input_k for an elementwise node, each as SymPy differentiates the body (with the
    deep-learning conventions: relu'(0) = 0). `y` stands for the node's own output."""
    names = dict(names or {})
    formulas = _Formulas(names)
    out_name = names.get(node, "y")
    lines = []
    for k, i in enumerate(node.inputs):
        d = elementwise_derivative(node, k)
        d = d.xreplace({X[j]: formulas.expr(inp, 1) for j, inp in enumerate(node.inputs)})
        d = d.xreplace({Y: sympy.Symbol(out_name, real=True)})
        lines.append(rf"\frac{{\partial {out_name}}}{{\partial {formulas.tex(formulas.expr(i, 1))}}} "
                     rf"= {formulas.tex(d)}")
    return Math(r" \qquad ".join(lines), "; ".join(lines))


def derivative(y, x, names=None, simplify=True, depth=10):
    """∂y/∂x as a formula: the gradient graph symgrad builds (TF1 semantics: y summed),
    simplified as `sg.function` would simplify it, written as mathematics."""
    names = dict(names or {})
    g = gradients(y, x)
    if simplify:
        # without fusion: it changes no mathematics, and fused bodies would hide the
        # forward nodes that `names` names
        (g,), _ = simplify_graph([g], fusion=False, keep=[x])
    tex, text = formula(g, names, depth)
    y_tex = _name_tex(y, names, "L" if y.shape == () else "y")
    x_tex = _name_tex(x, names, "x")
    lhs = rf"\frac{{\partial {y_tex}}}{{\partial {x_tex}}}"
    return Math(f"{lhs} = {tex}", f"∂{_plain_name(y_tex)}/∂{_plain_name(x_tex)} = {text}")


def _name_tex(node, names, default):
    if node in names:
        return names[node]
    return _leaf_name(node.name)[0] if node.name else default


def _leaf_name(name):
    """(LaTeX, text) of a Variable's or placeholder's name; a name with a slash (a layer's
    scope, mlp/0/W) in quotes, so that it does not read as a division."""
    if "/" in name:
        return rf"\text{{“{name}”}}", f"“{name}”"
    return sympy.latex(sympy.Symbol(name)), name


def _plain_name(tex):
    if tex.startswith(r"\text{"):
        tex = tex[len(r"\text{"):-1]
    return tex.replace("{", "").replace("}", "").replace("\\", "")
