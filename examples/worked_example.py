"""The worked example of the notes: z = sin(x₁) + x₁·x₂, differentiated symbol to symbol.

∂z/∂x₁ = cos(x₁) + x₂ and ∂z/∂x₂ = x₁. symgrad appends the derivative nodes to the same graph;
we evaluate them with the NumPy interpreter and with a compiled function, and compare with the
formulas at (x₁, x₂) = (2, 3): z = sin 2 + 6 ≈ 6.909, ∂z/∂x₁ = cos 2 + 3 ≈ 2.584, ∂z/∂x₂ = 2.

In: nothing. Out: printed values and the derivative graph; main() returns (z, dz/dx1, dz/dx2).
Run: python examples/worked_example.py
"""
import math

import numpy as np

import symgrad as sg


def main(x1_value=2.0, x2_value=3.0):
    x1 = sg.placeholder("x1", (), "float64")
    x2 = sg.placeholder("x2", (), "float64")
    z = sg.sin(x1) + x1 * x2
    dz_dx1, dz_dx2 = sg.gradients(z, [x1, x2])

    interpreted = sg.evaluate([z, dz_dx1, dz_dx2], {x1: x1_value, x2: x2_value})
    f = sg.function([x1, x2], [z, dz_dx1, dz_dx2])
    compiled = f(x1_value, x2_value)
    expected = [math.sin(x1_value) + x1_value * x2_value, math.cos(x1_value) + x2_value, x1_value]
    for name, a, b, e in zip(("z", "dz/dx1", "dz/dx2"), interpreted, compiled, expected):
        print(f"{name:7s} interpreted {float(a):.6f}  compiled {float(b):.6f}  formula {e:.6f}")
    np.testing.assert_allclose([float(v) for v in compiled], expected, rtol=1e-12)
    try:
        from symgrad import viz
        print("\nthe compiled graph:")
        viz.debugprint(f)
    except Exception:  # drawing is optional here: the numbers above are the example
        print(f"\n{f.graph.number_of_nodes()} nodes in the compiled graph")
    return tuple(float(v) for v in compiled)


if __name__ == "__main__":
    main()
