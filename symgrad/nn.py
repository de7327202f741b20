"""Layers, activations, losses and initialisers of the course notes, built from symgrad ops.

In: symbolic tensors (placeholders, Variables, nodes) and NumPy random generators.
Out: symbolic tensors. Losses are means over the batch (axis 0). Layers are small Python
objects that own their Variables (`params`, split into `weights` and `biases`, so weight decay
can skip biases) and, when called on a node, return the node of their output.

Integer class labels: softmax cross-entropy takes them as an int64 tensor (one-hot rows are
built in the graph, every label checked in range), or one-hot/probability rows.
`one_hot(labels, num_classes)` makes rows from labels: outside the graph for a NumPy array
(the training loop does this for you), in the graph for an int64 node.

Training and evaluation: `Dropout` and `BatchNorm` compute differently in the two, so a model
holding them is called with `training=True` (the train step's graph: dropout masks, batch
statistics, and `state_updates` for the running statistics) or `training=False` (the
evaluation graph). Their non-trained Variables (running statistics, a generator's counter)
are the layers' `state`.
"""
from __future__ import annotations

import numpy as np

from .core import ops
from .core.graph import Node, Variable, is_integer
from .core.random import Generator
from .data import batching

__all__ = ["softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mean_squared_error",
           "gaussian_negative_log_likelihood", "gaussian_nll", "l2_weight_decay", "accuracy", "one_hot",
           "Dropout", "BatchNorm", "LayerNorm", "Embedding", "lecun_normal",
           "identity", "absolute_value_rectification", "activation", "gaussian",
           "xavier_uniform", "xavier_normal", "he_normal", "zeros", "constant", "initialiser",
           "Layer", "Dense", "LowRankDense", "PReLU", "Maxout", "Conv2d", "MaxPool2d",
           "AvgPool2d", "Flatten", "Reshape", "Sequential", "MLP", "CNN"]


# ============================================================================ losses

def one_hot(labels, num_classes, dtype="float32"):
    """Rows of `num_classes` zeros with a 1 at each label: a NumPy array for NumPy labels
    (checked in range here), an `sg.one_hot` node for an int64 node (checked on each call)."""
    if isinstance(labels, Node):
        return ops.one_hot(labels, num_classes, dtype)
    return batching.one_hot(labels, num_classes, dtype)


def softmax_cross_entropy(logits, labels, axis=-1, labels_sum_to_one=False):
    """Mean over the batch of -sum(labels * log_softmax(logits)), for any label rows: one-hot,
    probabilities, soft or unnormalised targets, zero rows (masked padding). Its gradient
    with respect to the logits is softmax(logits)·sum(labels) - labels (over the batch size).

    `labels_sum_to_one=True` declares that every row sums to 1 (one-hot or probability rows);
    the gradient then simplifies to softmax(logits) - labels, and every call checks the
    declaration (a row that breaks it raises ValueError instead of giving a wrong gradient).

    `labels` may also be int64 class indices, one per row (shape of logits without `axis`,
    which must be the last): their one-hot rows are built in the graph (each label checked in
    range on every call), and they are known to sum to 1, so the gradient is softmax - p."""
    if isinstance(labels, Node) and is_integer(labels):
        if axis not in (-1, logits.ndim - 1):
            raise ValueError("softmax_cross_entropy: integer labels index the last axis; "
                             "move the classes last")
        labels = ops.one_hot(labels, logits.shape[-1], logits.dtype)
    elif labels_sum_to_one:
        labels = ops.distribution(labels, axis)
    per_example = -ops.sum(labels * ops.log_softmax(logits, axis), axis=axis)
    return ops.mean(per_example)


def sigmoid_binary_cross_entropy(logits, labels):
    """Mean binary cross-entropy from logits, in the stable form softplus(z) - y·z."""
    return ops.mean(ops.softplus(logits) - labels * logits)


def mean_squared_error(predictions, targets):
    """Mean over all elements of (predictions - targets)²."""
    return ops.mean(ops.square(predictions - targets))


def gaussian_negative_log_likelihood(mean, targets, precision):
    """Mean over all elements of -log N(y; mu, 1/beta) up to its constant:
    -1/2 log(beta) + 1/2 beta (y - mu)^2. `precision` (beta > 0) is a node of any shape that
    broadcasts against `mean`, e.g. `sg.exp(log_beta)` for a learned scalar Variable `log_beta`,
    or a per-example network output passed through softplus."""
    return ops.mean(-0.5 * ops.log(precision) + 0.5 * precision * ops.square(targets - mean))


gaussian_nll = gaussian_negative_log_likelihood


def l2_weight_decay(params, coefficient, include_biases=False):
    """coefficient/2 · sum of squared weights, to add to a loss. `params` is a layer or model
    (its `.weights`, plus `.biases` if `include_biases`) or a list of Variables, in which case
    1-D Variables count as biases (the usual convention: weights are matrices)."""
    if hasattr(params, "weights"):
        chosen = list(params.weights) + (list(params.biases) if include_biases else [])
    else:
        chosen = [p for p in params if include_biases or p.ndim >= 2]
    if not chosen:
        raise ValueError("l2_weight_decay: no weights to decay")
    total = ops.add(*[ops.sum(ops.square(p)) for p in chosen])
    return (0.5 * coefficient) * total


def accuracy(outputs, labels):
    """Fraction of rows classified correctly (NumPy, outside the graph). `outputs` are logits
    or probabilities: argmax over the last axis, or, with one column, a logit above 0.
    `labels` are integer classes or one-hot rows."""
    outputs, labels = np.asarray(outputs), np.asarray(labels)
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        predicted = (outputs[:, 0] > 0).astype(np.int64)
        truth = labels.reshape(len(labels), -1)[:, 0] > 0.5
    else:
        predicted = outputs.argmax(axis=-1)
        truth = labels.argmax(axis=-1) if labels.ndim == outputs.ndim else labels
    return float(np.mean(predicted == truth))


# ============================================================================ activations

def identity(x):
    return x


def absolute_value_rectification(x):
    """g(z) = |z|: the rectifier that keeps the magnitude of negative inputs too."""
    return ops.abs(x)


ACTIVATIONS = {
    "identity": identity,
    "linear": identity,
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "relu": ops.relu,
    "leaky_relu": ops.leaky_relu,
    "abs": absolute_value_rectification,
    "softplus": ops.softplus,
    "softsign": ops.softsign,
    "cos": ops.cos,
}
# Activations with parameters are layers: "prelu" (PReLU) and "maxout" (Maxout), which MLP knows.
PARAMETRIC_ACTIVATIONS = ("prelu", "maxout")
RELU_LIKE = ("relu", "leaky_relu", "prelu", "abs", "maxout")


def activation(name):
    """The activation function called `name` (or `name` itself if it is already callable)."""
    if callable(name):
        return name
    if name not in ACTIVATIONS:
        known = ", ".join(sorted(ACTIVATIONS) + list(PARAMETRIC_ACTIVATIONS))
        raise ValueError(f"unknown activation {name!r}; choose one of {known}")
    return ACTIVATIONS[name]


_lookup_activation = activation  # layers take an `activation` argument that shadows the name


# ============================================================================ initialisers
# Each takes (shape, rng, dtype) and returns a NumPy array. fan_in/fan_out are the first and
# last sizes of a weight matrix.

def _fans(shape):
    """(fan_in, fan_out): a matrix's first and last sizes; for a filter bank (O, C, kh, kw),
    C·kh·kw inputs and O·kh·kw outputs per unit."""
    if len(shape) < 2:
        return 1, 1
    if len(shape) == 4:
        taps = shape[2] * shape[3]
        return shape[1] * taps, shape[0] * taps
    return shape[0], shape[-1]


def gaussian(std=0.01):
    """N(0, std²) with a fixed standard deviation."""
    def init(shape, rng, dtype="float32"):
        return (rng.standard_normal(shape) * std).astype(dtype)
    init.__name__ = f"gaussian({std})"
    return init


def xavier_uniform(shape, rng, dtype="float32"):
    """Glorot & Bengio (2010): U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), which keeps
    activation and gradient variances roughly constant across tanh/sigmoid layers."""
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


def xavier_normal(shape, rng, dtype="float32"):
    """Glorot normal: N(0, 2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return (rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def lecun_normal(shape, rng, dtype="float32"):
    """LeCun et al. (1998, "Efficient BackProp"): N(0, 1 / fan_in), which gives each unit's
    pre-activation the variance of one input, whatever the layer's width."""
    fan_in, _ = _fans(shape)
    return (rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)).astype(dtype)


def he_normal(shape, rng, dtype="float32"):
    """He et al. (2015, "MSRA"): N(0, 2 / fan_in), which compensates for ReLU zeroing half
    of its inputs."""
    fan_in, _ = _fans(shape)
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def zeros(shape, rng=None, dtype="float32"):
    return np.zeros(shape, dtype)


def constant(value):
    """Every entry `value`: e.g. 0.1 for ReLU biases, so units start active."""
    def init(shape, rng=None, dtype="float32"):
        return np.full(shape, value, dtype)
    init.__name__ = f"constant({value})"
    return init


INITIALISERS = {
    "gaussian": gaussian(0.01),
    "xavier": xavier_uniform, "glorot": xavier_uniform, "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal, "glorot_normal": xavier_normal,
    "lecun": lecun_normal, "lecun_normal": lecun_normal,
    "he": he_normal, "msra": he_normal, "he_normal": he_normal,
    "zeros": zeros,
}


def initialiser(spec):
    """An initialiser from a name, a number (a constant), or a callable (returned as is)."""
    if callable(spec):
        return spec
    if isinstance(spec, (int, float)):
        return constant(float(spec))
    if spec not in INITIALISERS:
        raise ValueError(f"unknown initialiser {spec!r}; choose one of {', '.join(INITIALISERS)}, "
                         f"a number, or a function (shape, rng, dtype) -> array")
    return INITIALISERS[spec]


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# ============================================================================ layers

class Layer:
    """Base of the layers: `params` are its trained Variables; `weights` get weight decay,
    `biases` (and other vectors such as PReLU slopes) do not by default. `state` are Variables
    it keeps but does not train (running statistics, a generator's counter); `state_updates`,
    the (Variable, new value) pairs its last call with training=True asks the train step to
    make. A layer that computes differently in training (`mode_dependent`) takes `training`."""

    weights: list
    biases: list
    state: list = []
    state_updates: list = []
    mode_dependent = False

    @property
    def params(self):
        return list(self.weights) + list(self.biases)

    def __call__(self, x):
        raise NotImplementedError


def _training(layer, training):
    if training is None:
        raise ValueError(f"{type(layer).__name__} computes differently in training and in "
                         f"evaluation: call the model with training=True (the train step's "
                         f"graph) or training=False (the evaluation graph)")
    return bool(training)


class Dropout(Layer):
    """Inverted dropout (Srivastava et al., 2014): in training, each unit is kept with
    probability 1 - rate and scaled by 1/(1 - rate), so evaluation (training=False) is the
    identity. The masks come from a `Generator(seed)` in the graph: a fresh mask every step,
    reproducible from the seed, and the whole step one compiled call."""

    mode_dependent = True
    weights, biases = (), ()

    def __init__(self, rate=0.5, seed=0, name="dropout"):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate, self.name = float(rate), name
        self.generator = Generator(seed, name=name)
        self.state = [self.generator.state]

    def __call__(self, x, training=None):
        if not _training(self, training) or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        return x * self.generator.bernoulli(x.shape, keep, x.dtype) * (1.0 / keep)


class _Normalization(Layer):
    """(x - mean) / sqrt(var + eps), then a learned scale `gamma` (ones) and shift `beta`
    (zeros) per feature; no weight decay."""

    def __init__(self, features, eps, name, dtype):
        self.name, self.eps = name, float(eps)
        self.gamma = Variable(np.ones(features, dtype), name=f"{name}/gamma")
        self.beta = Variable(np.zeros(features, dtype), name=f"{name}/beta")
        self.weights, self.biases = [], [self.gamma, self.beta]

    @staticmethod
    def _moments(x, axes):
        """(x - its mean over `axes`, its biased variance over them), kept dimensions."""
        mean = ops.mean(x, axis=axes, keepdims=True)
        centred = x - mean
        return mean, centred, ops.mean(ops.square(centred), axis=axes, keepdims=True)

    def _normalized(self, centred, var, shape):
        """centred / sqrt(var + eps) scaled and shifted, gamma and beta spread by `shape`."""
        x_hat = centred / ops.sqrt(var + self.eps)
        return x_hat * ops.reshape(self.gamma, shape) + ops.reshape(self.beta, shape)


class BatchNorm(_Normalization):
    """Batch normalisation (Ioffe & Szegedy, 2015) of feature axis `axis` (1: the features of
    (N, F) rows, the channels of (N, C, H, W) images), over every other axis. In training it
    uses the batch's mean and (biased) variance, and `state_updates` move the running
    statistics towards them: running ← (1 - momentum)·running + momentum·batch. Evaluation
    (training=False) uses the running statistics."""

    mode_dependent = True

    def __init__(self, features, axis=1, momentum=0.1, eps=1e-5, name="batchnorm", dtype="float32"):
        super().__init__(features, eps, name, dtype)
        self.axis, self.momentum = axis, float(momentum)
        self.running_mean = Variable(np.zeros(features, dtype), name=f"{name}/running_mean")
        self.running_var = Variable(np.ones(features, dtype), name=f"{name}/running_var")
        self.state = [self.running_mean, self.running_var]
        self.state_updates = []

    def __call__(self, x, training=None):
        axis = self.axis % x.ndim
        shape = tuple(-1 if k == axis else 1 for k in range(x.ndim))
        if _training(self, training):
            mean, centred, var = self._moments(x, tuple(k for k in range(x.ndim) if k != axis))
            m = self.momentum
            self.state_updates = [
                (r, (1.0 - m) * r + m * ops.reshape(batch, r.shape))
                for r, batch in ((self.running_mean, mean), (self.running_var, var))]
        else:
            centred = x - ops.reshape(self.running_mean, shape)
            var = ops.reshape(self.running_var, shape)
        return self._normalized(centred, var, shape)


class LayerNorm(_Normalization):
    """Layer normalisation (Ba et al., 2016): each example normalised over its last axis (the
    features), then scaled and shifted per feature. The same in training and evaluation."""

    def __init__(self, features, eps=1e-5, name="layernorm", dtype="float32"):
        super().__init__(features, eps, name, dtype)

    def __call__(self, x):
        _, centred, var = self._moments(x, -1)
        return self._normalized(centred, var, (1,) * (x.ndim - 1) + (-1,))


class Embedding(Layer):
    """A table of `num` vectors of size `dim`, looked up by int64 ids of any shape (output:
    ids.shape + (dim,)). The gradient adds into the rows looked up (sg.take's scatter-add).
    Initialised N(0, 1) by default; the table is a weight. Variable '<name>/W'."""

    def __init__(self, num, dim, weight_init=None, rng=None, name="embedding", dtype="float32"):
        rng = _rng(rng)
        init = initialiser(weight_init) if weight_init is not None else gaussian(1.0)
        self.W = Variable(init((num, dim), rng, dtype), name=f"{name}/W")
        self.weights, self.biases = [self.W], []

    def __call__(self, ids):
        return ops.take(self.W, ids, axis=0)


class Dense(Layer):
    """y = activation(x @ W + b), W of shape (n_in, n_out). Variables are named
    '<name>/W' and '<name>/b' (the names key saved parameter files)."""

    def __init__(self, n_in, n_out, activation=None, weight_init="xavier", bias_init=0.0,
                 rng=None, name="dense", dtype="float32"):
        rng = _rng(rng)
        self.name = name
        self.activation = _lookup_activation(activation or "identity")
        self.W = Variable(initialiser(weight_init)((n_in, n_out), rng, dtype), name=f"{name}/W")
        self.b = Variable(initialiser(bias_init)((n_out,), rng, dtype), name=f"{name}/b")
        self.weights, self.biases = [self.W], [self.b]

    def __call__(self, x):
        return self.activation(x @ self.W + self.b)


class LowRankDense(Layer):
    """A dense layer whose weight matrix is factored W = U V with U (n_in, rank) and
    V (rank, n_out): rank·(n_in + n_out) parameters instead of n_in·n_out."""

    def __init__(self, n_in, n_out, rank, activation=None, weight_init="xavier", bias_init=0.0,
                 rng=None, name="lowrank", dtype="float32"):
        rng = _rng(rng)
        init = initialiser(weight_init)
        self.name = name
        self.activation = _lookup_activation(activation or "identity")
        self.U = Variable(init((n_in, rank), rng, dtype), name=f"{name}/U")
        self.V = Variable(init((rank, n_out), rng, dtype), name=f"{name}/V")
        self.b = Variable(initialiser(bias_init)((n_out,), rng, dtype), name=f"{name}/b")
        self.weights, self.biases = [self.U, self.V], [self.b]

    def __call__(self, x):
        # (x U) V, never U V: the product through the narrow rank is the cheap one.
        return self.activation((x @ self.U) @ self.V + self.b)


class PReLU(Layer):
    """Parametric ReLU: max(0, z) + a·min(0, z) with one learnable slope `a` per unit
    (He et al. 2015; a = 0.25 at the start). The slopes are not decayed by default."""

    def __init__(self, units, slope=0.25, name="prelu", dtype="float32"):
        self.name = name
        self.slope = Variable(np.full((units,), slope, dtype), name=f"{name}/slope")
        self.weights, self.biases = [], [self.slope]

    def __call__(self, z):
        return ops.relu(z) - self.slope * ops.relu(-z)


class Maxout(Layer):
    """Maxout units (Goodfellow et al. 2013): each of `units` outputs is the max over `pieces`
    affine pieces of the input. One weight matrix holds all pieces side by side."""

    def __init__(self, n_in, units, pieces=2, weight_init="xavier", bias_init=0.0, rng=None,
                 name="maxout", dtype="float32"):
        rng = _rng(rng)
        self.name, self.units, self.pieces = name, units, pieces
        self.W = Variable(initialiser(weight_init)((n_in, units * pieces), rng, dtype), name=f"{name}/W")
        self.b = Variable(initialiser(bias_init)((units * pieces,), rng, dtype), name=f"{name}/b")
        self.weights, self.biases = [self.W], [self.b]

    def __call__(self, x):
        z = x @ self.W + self.b
        out = z[:, 0:self.units]
        for k in range(1, self.pieces):
            out = ops.maximum(out, z[:, k * self.units:(k + 1) * self.units])
        return out


class Conv2d(Layer):
    """y = activation(conv2d(x, W) + b) on NCHW images, W of shape (out, in, kh, kw) (He or
    Xavier by the kernel's fan-in C·kh·kw), b one per output channel. Variables '<name>/W',
    '<name>/b'."""

    def __init__(self, in_channels, out_channels, kernel, stride=1, padding=0, activation=None,
                 weight_init="he", bias_init=0.0, rng=None, name="conv", dtype="float32"):
        rng = _rng(rng)
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        self.name, self.stride, self.padding = name, stride, padding
        self.activation = _lookup_activation(activation or "identity")
        self.W = Variable(initialiser(weight_init)((out_channels, in_channels, kh, kw), rng, dtype),
                          name=f"{name}/W")
        self.b = Variable(initialiser(bias_init)((out_channels,), rng, dtype), name=f"{name}/b")
        self.weights, self.biases = [self.W], [self.b]

    def __call__(self, x):
        z = ops.conv2d(x, self.W, self.stride, self.padding)
        return self.activation(z + ops.reshape(self.b, (1, -1, 1, 1)))


class _Parameterless(Layer):
    weights, biases = (), ()


class MaxPool2d(_Parameterless):
    """The maximum of each window (sg.max_pool2d); stride defaults to the window."""

    def __init__(self, window, stride=None, padding=0):
        self.window, self.stride, self.padding = window, stride, padding

    def __call__(self, x):
        return ops.max_pool2d(x, self.window, self.stride, self.padding)


class AvgPool2d(MaxPool2d):
    """The mean of each window (sg.avg_pool2d); stride defaults to the window."""

    def __call__(self, x):
        return ops.avg_pool2d(x, self.window, self.stride, self.padding)


class Flatten(_Parameterless):
    """(N, ...) -> (N, everything else): images to the rows a Dense layer reads."""

    def __call__(self, x):
        return ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))


class Reshape(_Parameterless):
    """(N, ...) -> (N,) + shape: e.g. rows of 64 pixels to (1, 8, 8) images."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def __call__(self, x):
        return ops.reshape(x, (-1,) + self.shape)


class Sequential(Layer):
    """Layers applied one after another. Call it with `training=True` or `False` when a layer
    computes differently in the two (Dropout, BatchNorm: `mode_dependent`)."""

    def __init__(self, layers):
        self.layers = list(layers)

    @property
    def mode_dependent(self):
        return any(layer.mode_dependent for layer in self.layers)

    def _joined(self, field):
        return [item for layer in self.layers for item in getattr(layer, field)]

    state = property(lambda self: self._joined("state"))
    state_updates = property(lambda self: self._joined("state_updates"))
    weights = property(lambda self: self._joined("weights"))
    biases = property(lambda self: self._joined("biases"))

    @property
    def params(self):
        """Layer by layer (mlp/0/W, mlp/0/b, mlp/1/W...), as a checkpoint lists them."""
        return [p for layer in self.layers for p in layer.params]

    def __call__(self, x, training=None):
        for layer in self.layers:
            x = layer(x, training=training) if layer.mode_dependent else layer(x)
        return x


class _Activation(Layer):
    def __init__(self, fn):
        self.fn, self.weights, self.biases = fn, [], []

    def __call__(self, x):
        return self.fn(x)


class CNN(Sequential):
    """A convolutional classifier of square one-channel images given as rows of side² pixels:
    for each of `channels`, a `kernel`×`kernel` convolution (padding "same", ReLU, He
    initialisation) then 2×2 max pooling; then a dense ReLU layer of `hidden` units and a
    linear output layer of `classes` logits (Xavier)."""

    def __init__(self, side, classes, channels=(16, 32), hidden=64, kernel=3, seed=0,
                 name="cnn", dtype="float32"):
        layers, c, size = [Reshape((1, side, side))], 1, side
        for k, out in enumerate(channels):
            if size < 2:
                raise ValueError(f"CNN: {len(channels)} conv-and-pool stages shrink a {side}×{side} "
                                 f"image to nothing; use fewer channels entries")
            layers += [Conv2d(c, out, kernel, padding="same", activation="relu", rng=seed + k,
                              name=f"{name}/conv{k}", dtype=dtype), MaxPool2d(2)]
            c, size = out, size // 2
        layers += [Flatten(),
                   Dense(c * size * size, hidden, "relu", "he", 0.0, seed + 10, f"{name}/dense", dtype),
                   Dense(hidden, classes, None, "xavier", 0.0, seed + 11, f"{name}/out", dtype)]
        super().__init__(layers)


class MLP(Sequential):
    """A multilayer perceptron: `sizes` = [n_in, hidden..., n_out], `activation` between
    layers (a name of ACTIVATIONS, "prelu", "maxout", or a function), `output_activation`
    after the last (default none: the outputs are logits).

    Defaults follow the notes: He initialisation for ReLU-like units and Xavier otherwise,
    except a first layer of other units, which is LeCun's (by fan-in: Xavier averages fan-in
    and fan-out, so 2 inputs to 32 tanh units start with weights of std 0.24, units nearly
    linear, and the spiral stayed at 60 % test accuracy for 100 epochs in 4 seeds of 5; LeCun's
    0.71 reached 97-98 %). Hidden ReLU biases start at 0.1 so units begin active, other biases
    at 0. `rank` makes the hidden layers low-rank (W = U V).

    `batch_norm=True` normalises each hidden layer's pre-activations (BatchNorm, before the
    activation, as Ioffe & Szegedy place it); `dropout` > 0 drops that fraction of each hidden
    layer's outputs in training. Either makes the model `mode_dependent`: call it with
    `training=True` or `False`."""

    def __init__(self, sizes, activation="relu", output_activation=None, weight_init=None,
                 bias_init=None, seed=0, rank=None, pieces=2, name="mlp", dtype="float32",
                 batch_norm=False, dropout=0.0):
        if len(sizes) < 2:
            raise ValueError(f"MLP: sizes must list at least the input and output sizes, got {sizes}")
        if batch_norm and activation == "maxout":
            raise ValueError("MLP: batch_norm normalises pre-activations, which a maxout layer "
                             "does not expose; use another activation")
        rng = _rng(seed)
        self.sizes, self.activation_name = list(sizes), activation
        relu_like = activation in RELU_LIKE
        hidden_init = weight_init or ("he" if relu_like else "xavier")
        first_init = "lecun" if weight_init is None and not relu_like else hidden_init
        hidden_bias = bias_init if bias_init is not None else (0.1 if activation == "relu" else 0.0)
        layers = []
        last = len(sizes) - 2
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            lname = f"{name}/{k}"
            init = first_init if k == 0 else hidden_init
            if k == last:
                # The output layer is linear (then softmax/sigmoid in the loss): Xavier, bias 0.
                out_init = "xavier" if hidden_init == "he" else hidden_init
                layers.append(Dense(n_in, n_out, output_activation, out_init, 0.0, rng, lname, dtype))
            elif activation == "maxout":
                layers.append(Maxout(n_in, n_out, pieces, init, hidden_bias, rng, lname, dtype))
            elif rank is not None and rank < min(n_in, n_out):
                layers.append(LowRankDense(n_in, n_out, rank, None, init, hidden_bias, rng,
                                           lname, dtype))
                layers.append(self._nonlinearity(activation, n_out, lname, dtype))
            else:
                layers.append(Dense(n_in, n_out, None, init, hidden_bias, rng, lname, dtype))
                layers.append(self._nonlinearity(activation, n_out, lname, dtype))
            if k != last and batch_norm:  # between the affine map and its activation
                layers.insert(len(layers) - 1, BatchNorm(n_out, name=f"{lname}/batchnorm", dtype=dtype))
            if k != last and dropout:
                layers.append(Dropout(dropout, seed=int(rng.integers(2 ** 31)), name=f"{lname}/dropout"))
        super().__init__(layers)

    @staticmethod
    def _nonlinearity(name, units, lname, dtype):
        if name == "prelu":
            return PReLU(units, name=f"{lname}/prelu", dtype=dtype)
        return _Activation(activation(name))
