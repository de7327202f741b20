"""Optimizers and learning-rate schedules, as graph updates for one compiled train step.

In: a scalar loss node and the parameter Variables to train. Out: `updates`, a list of
(Variable, new value node) for `sg.function(inputs, loss, updates=...)`: the parameter steps
and the optimizer's own state (velocities, moments, the step count). All of that state lives
in Variables, so the compiled step updates it in place with the parameters, all or nothing,
and a checkpoint saves it. The learning rate is a scalar Variable too: a schedule changes
`optimizer.learning_rate.value` between steps without recompiling.

Update rules follow Goodfellow, Bengio & Courville, Deep Learning, ch. 8 (ε the learning rate):

    SGD        θ ← θ - ε g
    Momentum   v ← α v - ε g;  θ ← θ + v                                  (Alg. 8.2)
    Nesterov   Alg. 8.3 evaluates g at θ + α v. We keep φ = θ + α v as the parameters
               instead (Sutskever et al. 2013), so g is the gradient at the parameters:
               v ← α v - ε g;  φ ← φ + α v - ε g   (same iterates, shifted by α v)
    RMSprop    r ← ρ r + (1 - ρ) g²;  θ ← θ - ε g / sqrt(δ + r)           (Alg. 8.5)
    Adam       t ← t + 1;  s ← ρ₁ s + (1 - ρ₁) g;  r ← ρ₂ r + (1 - ρ₂) g²;
               θ ← θ - ε ŝ / (sqrt(r̂) + δ),  ŝ = s / (1 - ρ₁ᵗ), r̂ = r / (1 - ρ₂ᵗ)  (Alg. 8.7)

Gradients can be clipped inside the compiled step, before the rule sees them: by value
(each entry to [-c, c]) or by global norm (all gradients scaled by min(1, c / ‖g‖), ‖g‖ over
every parameter), as `clip_value=` and `clip_norm=` of any optimizer.

Schedules are called once per epoch as `schedule(epoch, history) -> learning rate`; they are
pure functions of the run's history, so a resumed run picks up the same rate.
"""
from __future__ import annotations

import numpy as np

from .core import ops
from .core.autodiff import gradients
from .core.graph import Variable


class Optimizer:
    """Base of the optimizers. `learning_rate` and `step` (the number of steps taken) are
    scalar Variables; `slots` are the per-parameter state Variables made by `updates`."""

    name = "optimizer"

    def __init__(self, learning_rate=0.01, *, clip_value=None, clip_norm=None):
        for what, limit in (("clip_value", clip_value), ("clip_norm", clip_norm)):
            if limit is not None and not (np.isfinite(limit) and limit > 0):
                raise ValueError(f"{type(self).__name__}: {what} must be a finite number > 0, "
                                 f"got {limit!r}")
        self.learning_rate = Variable(np.float32(learning_rate), name=f"{self.name}/learning_rate")
        self.step = Variable(np.float32(0), name=f"{self.name}/step")
        self.clip_value, self.clip_norm = clip_value, clip_norm
        self.slots = []

    @property
    def variables(self):
        """Every state Variable (for checkpoints): learning rate, step count, slots."""
        return [self.learning_rate, self.step] + self.slots

    def updates(self, loss, params, grads=None):
        """The (Variable, new value) pairs of one step on `params` down the gradient of `loss`
        (or along the given `grads`). Builds fresh state slots: use one optimizer per step."""
        params = list(params)
        for p in params:
            if not isinstance(p, Variable):
                raise TypeError(f"{type(self).__name__}: parameters must be Variables, got {p!r}")
        if len(set(params)) != len(params):
            raise ValueError(f"{type(self).__name__}: a parameter is listed twice")
        if grads is None:
            grads = gradients(loss, params)
        if self.clip_value is not None:
            grads = clip_by_value(grads, self.clip_value)
        if self.clip_norm is not None:
            grads = clip_by_global_norm(grads, self.clip_norm)
        self.slots = []
        t = self.step + 1.0
        result = [(self.step, t)]
        for p, g in zip(params, grads):
            result += self._update(p, g, self._rate(p), t)
        return result

    def _rate(self, p):
        rate = self.learning_rate
        return rate if p.dtype == rate.dtype else ops.cast(rate, p.dtype)

    def _slot(self, p, kind):
        slot = Variable(np.zeros(p.shape, p.dtype), name=f"{self.name}/{kind}/{p.name}")
        self.slots.append(slot)
        return slot

    def _update(self, p, g, rate, t):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(learning_rate={float(self.learning_rate.value):g})"


class SGD(Optimizer):
    """Plain stochastic gradient descent: θ ← θ - ε g."""

    name = "sgd"

    def _update(self, p, g, rate, t):
        return [(p, p - rate * g)]


class Momentum(Optimizer):
    """SGD with (Polyak's) momentum α: v ← α v - ε g; θ ← θ + v."""

    name = "momentum"

    def __init__(self, learning_rate=0.01, momentum=0.9, **clipping):
        super().__init__(learning_rate, **clipping)
        self.momentum = float(momentum)

    def _update(self, p, g, rate, t):
        v = self._slot(p, "velocity")
        v_new = self.momentum * v - rate * g
        return [(v, v_new), (p, p + v_new)]


class Nesterov(Momentum):
    """Nesterov momentum, in the form that needs the gradient only at the current parameters:
    v ← α v - ε g; θ ← θ + α v - ε g (see the module docstring)."""

    name = "nesterov"

    def _update(self, p, g, rate, t):
        v = self._slot(p, "velocity")
        v_new = self.momentum * v - rate * g
        return [(v, v_new), (p, p + self.momentum * v_new - rate * g)]


class RMSprop(Optimizer):
    """RMSprop: r ← ρ r + (1 - ρ) g²; θ ← θ - ε g / sqrt(δ + r)."""

    name = "rmsprop"

    def __init__(self, learning_rate=0.001, decay=0.9, epsilon=1e-6, **clipping):
        super().__init__(learning_rate, **clipping)
        self.decay, self.epsilon = float(decay), float(epsilon)

    def _update(self, p, g, rate, t):
        r = self._slot(p, "mean_square")
        r_new = self.decay * r + (1.0 - self.decay) * ops.square(g)
        return [(r, r_new), (p, p - rate * g / ops.sqrt(self.epsilon + r_new))]


class Adam(Optimizer):
    """Adam: bias-corrected first and second moment estimates (Kingma & Ba 2015)."""

    name = "adam"

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, **clipping):
        super().__init__(learning_rate, **clipping)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)

    def _update(self, p, g, rate, t):
        s, r = self._slot(p, "first_moment"), self._slot(p, "second_moment")
        s_new = self.beta1 * s + (1.0 - self.beta1) * g
        r_new = self.beta2 * r + (1.0 - self.beta2) * ops.square(g)
        t = t if t.dtype == p.dtype else ops.cast(t, p.dtype)
        s_hat = s_new / (1.0 - _power(self.beta1, t))
        r_hat = r_new / (1.0 - _power(self.beta2, t))
        step = rate * s_hat / (ops.sqrt(r_hat) + self.epsilon)
        return [(s, s_new), (r, r_new), (p, p - step)]


def clip_by_value(grads, limit):
    """Each gradient entry clipped to [-limit, limit] (NaN stays NaN)."""
    return [ops.minimum(ops.maximum(g, -float(limit)), float(limit)) for g in grads]


def global_norm(tensors):
    """‖(t₁, t₂, ...)‖₂ over every entry of every tensor, summed in float64: the squares of
    float32 entries cannot overflow there (1e20² is inf in float32, 1e40 in float64). (A
    rescaled sum, m·sqrt(Σ (t/m)²), would not survive the simplifier, which writes (t/m)² as
    t²/m².)"""
    total = None
    for t in tensors:
        square = ops.square(t if t.dtype == "float64" else ops.cast(t, "float64"))
        term = ops.sum(square) if t.ndim else square
        total = term if total is None else total + term
    return ops.sqrt(total)


def clip_by_global_norm(grads, max_norm):
    """The gradients scaled by min(1, max_norm / ‖g‖), ‖g‖ their global norm: the step's
    direction kept, its length capped (Pascanu et al. 2013). A NaN anywhere gives NaN."""
    grads = list(grads)
    norm = global_norm(grads)
    scale = float(max_norm) / ops.maximum(norm, float(max_norm))
    return [g * (scale if scale.dtype == g.dtype else ops.cast(scale, g.dtype)) for g in grads]


def _power(base, t):
    return ops.power(ops.constant(np.asarray(base, t.dtype)), t)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "rmsprop": RMSprop, "adam": Adam}


def get(name, learning_rate=None, **options):
    """An optimizer by name ("sgd", "momentum", "nesterov", "rmsprop", "adam")."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if learning_rate is not None:
        options["learning_rate"] = learning_rate
    return OPTIMIZERS[name](**options)


# ============================================================================ schedules

class Constant:
    """The same learning rate every epoch."""

    def __init__(self, learning_rate):
        self.learning_rate = float(learning_rate)

    def __call__(self, epoch, history=None):
        return self.learning_rate


class StepHalving:
    """Start at `initial`; multiply by `factor` (default ½) each time the monitored value
    (validation loss, else training loss) has not improved by `min_delta` for `patience`
    epochs; never below `minimum`."""

    def __init__(self, initial, patience=3, factor=0.5, minimum=0.0, min_delta=1e-4,
                 monitor="val_loss"):
        self.initial, self.patience, self.factor = float(initial), int(patience), float(factor)
        self.minimum, self.min_delta, self.monitor = float(minimum), float(min_delta), monitor

    def __call__(self, epoch, history=None):
        values = _monitored(history, self.monitor)
        rate, best, waited = self.initial, np.inf, 0
        for value in values[:epoch]:
            if value < best - self.min_delta:
                best, waited = value, 0
            else:
                waited += 1
                if waited >= self.patience:
                    rate, waited = max(rate * self.factor, self.minimum), 0
        return rate


class InverseTime:
    """ε = a / (b + epoch): decays like 1/t, which satisfies the Robbins–Monro conditions
    (Σ ε = ∞, Σ ε² < ∞) for convergence of SGD."""

    def __init__(self, a, b=1.0):
        self.a, self.b = float(a), float(b)

    def __call__(self, epoch, history=None):
        return self.a / (self.b + epoch)


class CosineDecay:
    """From `initial` down to `floor` along half a cosine over `epochs` epochs, then `floor`
    (Loshchilov & Hutter 2017, without restarts)."""

    def __init__(self, initial, epochs, floor=0.0):
        self.initial, self.epochs, self.floor = float(initial), int(epochs), float(floor)

    def __call__(self, epoch, history=None):
        done = min(epoch, self.epochs) / max(self.epochs, 1)
        return self.floor + (self.initial - self.floor) * 0.5 * (1.0 + np.cos(np.pi * done))


class LinearWarmup:
    """Up from target/warmup to `target` over the first `warmup` epochs (epoch k: target ·
    (k + 1)/warmup), then `after` (a schedule, called with the epochs since the warm-up
    ended), or `target`."""

    def __init__(self, target, warmup, after=None):
        self.target, self.warmup, self.after = float(target), int(warmup), after

    def __call__(self, epoch, history=None):
        if epoch < self.warmup:
            return self.target * (epoch + 1) / self.warmup
        return self.after(epoch - self.warmup, history) if self.after else self.target


class LinearDecay:
    """The course's schedule: ε_k = (1 - α) ε₀ + α ε_τ with α = k/τ, from ε₀ = `initial` to
    ε_τ = `final` at epoch τ = `epochs`, then constant (Goodfellow et al., §8.3.1)."""

    def __init__(self, initial, final, epochs):
        self.initial, self.final, self.epochs = float(initial), float(final), int(epochs)

    def __call__(self, epoch, history=None):
        alpha = min(epoch, self.epochs) / max(self.epochs, 1)
        return (1.0 - alpha) * self.initial + alpha * self.final


class ExponentialDecay:
    """ε = initial · decay^epoch."""

    def __init__(self, initial, decay):
        self.initial, self.decay = float(initial), float(decay)

    def __call__(self, epoch, history=None):
        return self.initial * self.decay ** epoch


def _monitored(history, key):
    if history is None:
        return []
    values = history[key] if key in history.keys() else history["loss"]
    return [v for v in values if v is not None]


def schedule(spec):
    """A schedule from a number (constant) or a callable (returned as is)."""
    if spec is None or callable(spec):
        return spec
    return Constant(spec)


__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "RMSprop", "Adam", "get", "OPTIMIZERS",
           "clip_by_value", "clip_by_global_norm", "global_norm",
           "Constant", "StepHalving", "InverseTime", "CosineDecay", "LinearWarmup", "LinearDecay",
           "ExponentialDecay", "schedule"]
