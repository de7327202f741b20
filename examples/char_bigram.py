"""A character bigram language model: embeddings, integer labels, and sampling in the graph.

Data: the text of this repository's README. Each character (an int64 id) is looked up in an
Embedding table (sg.take; its gradient is a scatter-add into the rows looked up), a dense
layer gives logits for the next character, and softmax cross-entropy takes the next
characters' ids as int64 labels (one-hot rows built and range-checked in the graph, so the
gradient is softmax - p). One compiled Adam step per minibatch.

The best any bigram model can do on this text is the cross-entropy of the counted bigram
frequencies; the trained model approaches it. Then it writes text: each next character is
sg.argmax(logits + Gumbel noise), the Gumbel-max trick, which samples from softmax(logits),
with the noise drawn in the graph by sg.random (a fresh draw on each call).

In: nothing. Out: printed losses (nats per character) and a sample; main() returns
(initial loss, final loss, the counted bigrams' loss, the sample).
Run: python examples/char_bigram.py
"""
import os

import numpy as np

import symgrad as sg
from symgrad import nn, optim

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def load_text():
    with open(README, encoding="utf-8") as f:
        text = " ".join(f.read().lower().split())
    vocabulary = sorted(set(text))
    ids = np.array([vocabulary.index(c) for c in text], np.int64)
    return vocabulary, ids


def counted_bigram_loss(ids, size):
    """Cross-entropy of the text under its own bigram frequencies (the best bigram model)."""
    counts = np.zeros((size, size))
    np.add.at(counts, (ids[:-1], ids[1:]), 1)
    p = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    return float(-np.mean(np.log(p[ids[:-1], ids[1:]])))


def main(steps=1500, batch=512, seed=0, sample_length=80, verbose=True):
    vocabulary, ids = load_text()
    size = len(vocabulary)
    current = sg.placeholder("current", (None,), "int64")
    following = sg.placeholder("next", (None,), "int64")
    embed = nn.Embedding(size, 24, rng=seed, name="char/embedding")
    out = nn.Dense(24, size, weight_init="xavier", rng=seed + 1, name="char/out")
    logits = out(embed(current))
    loss = nn.softmax_cross_entropy(logits, following)
    params = [embed.W, out.W, out.b]
    step = sg.function([current, following], loss, updates=optim.Adam(1e-2).updates(loss, params))
    evaluate = sg.function([current, following], loss)

    rng = np.random.default_rng(seed)
    initial = float(evaluate(ids[:-1], ids[1:]))
    for _ in range(steps):
        at = rng.integers(0, len(ids) - 1, batch)
        step(ids[at], ids[at + 1])
    final = float(evaluate(ids[:-1], ids[1:]))
    best = counted_bigram_loss(ids, size)

    # sampling: Gumbel-max, the noise drawn in the graph
    noise = -sg.log(-sg.log(sg.random.Generator(seed).uniform(logits.shape, 1e-12, 1.0)))
    next_id = sg.function([current], sg.argmax(logits + noise, axis=1))
    chars = [vocabulary.index("t")]
    for _ in range(sample_length - 1):
        chars.append(int(next_id(np.array(chars[-1:], np.int64))[0]))
    sample = "".join(vocabulary[c] for c in chars)
    if verbose:
        print(f"{len(ids)} characters, {size} distinct; loss {initial:.3f} -> {final:.3f} nats "
              f"per character (counted bigrams: {best:.3f})")
        print(f"sample: {sample!r}")
    return initial, final, best, sample


if __name__ == "__main__":
    main()
