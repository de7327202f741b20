"""Hessian-free optimisation: truncated Newton-CG with Levenberg-Marquardt damping.

In: a scalar loss node, the Variables to optimise, the data placeholders (`inputs`), and the
curvature to use: the Hessian, or the Gauss-Newton matrix of the network output `z` for a
softmax-CE / MSE / sigmoid-BCE loss (positive semidefinite, Martens' choice for networks).
Out: `HessianFree`, whose `step(*data)` updates the Variables' `.value` in place and returns
the loss before the step; `.last` holds what the step did (StepInfo).

Each step (Martens 2010, "Deep learning via Hessian-free optimization"):
  1. loss f and gradient g on the batch (one compiled call);
  2. d ≈ argmin q(d) = gᵀd + ½ dᵀB d by CG on (B + λI) d = -g, warm-started from the last
     step's d (decayed), truncated after `cg_max_iter` curvature products;
  3. the reduction ratio ρ = (f(θ + d) - f(θ)) / (q(d) - q(0)) on the same batch: ρ near 1
     means the quadratic model is trusted, so λ shrinks (× drop) when ρ > 3/4 and grows
     (× boost) when ρ < 1/4 — the Levenberg-Marquardt heuristic;
  4. a backtracking (Armijo) line search along d, as in Martens & Sutskever 2012: the step
     α·d is taken for the largest α in 1, ½, ¼, ... with f(θ + αd) <= f + c·α·gᵀd; if none
     is found the parameters are left as they were.
Compiled: the loss (for the line search), and the curvature product in two stages: binding it
to the batch computes the loss, the gradient and everything the products share, once per step
(linalg.BoundOperator); each CG iteration then computes only a product's tangents.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import linalg
from .core.autodiff import gradients
from .compiler.function import function
from .core.graph import Variable

__all__ = ["StepInfo", "HessianFree"]


@dataclass
class StepInfo:
    """What one step did. loss/new_loss: before and after the step; grad_norm: |∇f| before
    the step; rho: the reduction ratio of the full CG step; damping: λ used for this step;
    step_size: the line search's α (0 if nothing was taken); cg_iterations: curvature
    products; accepted: whether the parameters moved."""
    loss: float
    new_loss: float
    grad_norm: float
    rho: float
    damping: float
    step_size: float
    cg_iterations: int
    accepted: bool


class HessianFree:
    """Truncated Newton-CG over `params` (Variables) for the scalar `loss`.

    curvature="hessian" uses H·v; curvature="gauss_newton" uses Jᵀ H_L J·v and needs the
    network output `z` and `loss_kind` (see linalg.gauss_newton_vector_product).
    damping: the initial λ; boost/drop: its factors when the model is poor/good;
    cg_max_iter, cg_tol: CG truncation (relative residual); warm_start: the fraction of the
    previous step that starts the next CG (0 starts from zero); armijo, max_backtracks: the
    line search's sufficient-decrease constant and its number of halvings."""

    def __init__(self, loss, params, inputs=(), curvature="hessian", z=None, loss_kind=None,
                 damping=1.0, boost=1.5, drop=2 / 3, min_damping=0.0, cg_max_iter=50,
                 cg_tol=1e-4, warm_start=0.95, armijo=1e-2, max_backtracks=20):
        params = list(params)
        for p in params:
            if not isinstance(p, Variable):
                raise TypeError(f"HessianFree: parameters must be Variables (they are updated "
                                f"in place), got {p!r}")
        if not boost > 1 > drop > 0:
            raise ValueError(f"HessianFree: need boost > 1 > drop > 0, got {boost}, {drop}")
        self.params, self.inputs = params, list(inputs)
        self.damping, self.boost, self.drop, self.min_damping = damping, boost, drop, min_damping
        self.cg_max_iter, self.cg_tol, self.warm_start = cg_max_iter, cg_tol, warm_start
        self.armijo, self.max_backtracks = armijo, max_backtracks
        # Binding the curvature at a point also gives the loss and gradient there, from the
        # same forward pass; the line search needs only losses.
        also = [loss] + gradients(loss, params, disconnected="zero")
        self.loss = function(self.inputs, loss, name="loss")
        if curvature == "hessian":
            self.curvature = linalg.HessianOperator(loss, params, self.inputs, also=also)
        elif curvature == "gauss_newton":
            if z is None or loss_kind is None:
                raise ValueError("HessianFree: curvature='gauss_newton' needs the network output "
                                 "`z` and `loss_kind`")
            self.curvature = linalg.GaussNewtonOperator(z, loss_kind, params, self.inputs, also=also)
        else:
            raise ValueError(f"HessianFree: curvature must be 'hessian' or 'gauss_newton', "
                             f"not {curvature!r}")
        self._previous = None
        self.last = None

    def step(self, *data):
        """One truncated Newton step on this batch; returns the loss before the step."""
        curvature = self.curvature.bind(*data)
        loss, *grad = curvature.values
        loss = float(loss)
        grad = [np.asarray(g, np.float64) for g in grad]
        b = [-g for g in grad]
        damping = self.damping
        x0 = None
        if self._previous is not None and self.warm_start:
            x0 = [self.warm_start * d for d in self._previous]
        result = linalg.conjugate_gradient(curvature, b, x0=x0, damping=damping,
                                           tol=self.cg_tol, max_iter=self.cg_max_iter)
        d = result.x
        # The model's change q(d) - q(0) = gᵀd + ½ dᵀB d, with B d read off CG's residual
        # (B + λI) d = b - r, so it costs no further curvature product.
        b_d = [bi - ri - damping * di for bi, ri, di in zip(b, result.residual, d)]
        predicted = linalg.inner(grad, d) + 0.5 * linalg.inner(d, b_d)

        old = [p.value.copy() for p in self.params]
        new_loss = self._loss_at(old, d, 1.0, data)
        rho = (new_loss - loss) / predicted if predicted < 0 else -math.inf
        if not math.isfinite(rho) or rho < 0.25:
            self.damping = damping * self.boost
        elif rho > 0.75:
            self.damping = max(damping * self.drop, self.min_damping)

        step, trial, slope = 1.0, new_loss, linalg.inner(grad, d)
        if slope >= 0:  # not a descent direction (CG stopped on negative curvature): use -g
            d, slope = b, -linalg.inner(grad, grad)
            trial = self._loss_at(old, d, step, data)
        for _ in range(self.max_backtracks):
            if trial <= loss + self.armijo * step * slope:
                break
            step *= 0.5
            trial = self._loss_at(old, d, step, data)
        accepted = trial <= loss + self.armijo * step * slope
        if accepted:
            self._previous = [step * di for di in d]
        else:
            for p, value in zip(self.params, old):
                p.value = value
            self._previous = None
        self.last = StepInfo(loss, trial if accepted else loss, linalg.norm(grad), rho, damping,
                             step if accepted else 0.0, result.iterations, accepted)
        return loss

    def _loss_at(self, base, direction, step, data):
        """The loss with the parameters set to base + step·direction (left set there)."""
        for p, value, di in zip(self.params, base, direction):
            p.value = value + step * di
        loss = float(self.loss(*data))
        return loss if math.isfinite(loss) else math.inf
