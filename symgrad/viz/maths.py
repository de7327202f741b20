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

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from ..core.autodiff import gradients
from ..core.dims import text as dim_text
from ..core.graph import is_named_leaf
from ..core.ops import OPS, elementwise_body, elementwise_derivative
from ..core.scalar import X, Y, number
from ..core.simplify import simplify as simplify_graph
from .describe import _BodyPrinter, number_text, operand_names, value_keys as _value_keys

FUNCTION_NAMES = {"log_softmax": r"\log\operatorname{softmax}", "logsumexp": r"\operatorname{logsumexp}"}


class Math:
    """A formula: LaTeX for notebooks, `text` for terminals."""

    def __init__(self, latex, text=None):
        self.latex = latex
        self.text = text or latex

    def _repr_latex_(self):
        return f"$\\displaystyle {self.latex}$"

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"Math({self.text})"


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


def _hadamard(printer, expr, symbol, plain_mul):
    """A product of two or more tensors is elementwise: written with ⊙, so that it is not
    read as a matrix product; scalar factors (numbers, N) stay in front."""
    tensors = getattr(printer, "tensors", ())
    factors = expr.as_ordered_factors()
    tensor_factors = [f for f in factors if f.free_symbols & tensors]
    if len(tensor_factors) < 2:
        return plain_mul(expr)
    scalar = sympy.Mul(*[f for f in factors if not f.free_symbols & tensors])
    compound = getattr(printer, "compound", ())

    def factor(f):
        text = printer.parenthesize(f, PRECEDENCE["Mul"], strict=True)
        if f in compound:  # a matrix product inside an elementwise one
            return r"\left(" + text + r"\right)" if "odot" in symbol else f"({text})"
        return text
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
            name = node.name or node.op
            return self.atom(node, sympy.latex(sympy.Symbol(name)), name)
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
        atom = self.atom(node, *self._function(node, depth))
        if node.op == "matmul":
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
            names = [dim_text(d) for d in node.attrs["sizes"]]
            tex = " ".join(n if len(n) == 1 else rf"\mathrm{{{n}}}" for n in names)
            return tex, " ".join(names)
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
    return sympy.latex(sympy.Symbol(node.name)) if node.name else default


def _plain_name(tex):
    return tex.replace("{", "").replace("}", "").replace("\\", "")
