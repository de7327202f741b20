"""The register tiles of the direct convolution kernels (convolution.py): their sizes, and
how much of the work each layout spends on outputs that exist (its fill).

In: a convolution's sizes (filters O, taps C·kh·kw, output Ho × Wo, padded width Wp) and the
elements per vector. Out: the fill, in (0, 1], of each layout of the sums:
  - along the strip: vectors of consecutive positions of an image's Ho·Wp strip, which also
    covers the Wp - Wo positions past each row's last output, in tiles of BLOCKS vectors
    (forward) for FILTERS filters at a time (GRAD_FILTERS × GRAD_TAPS in the gradient);
  - across filters: one vector of filters per position, ACROSS positions (forward) or taps
    (gradient) at a time, the filters padded to whole vectors.
Codegen picks the fuller layout (weighed by ACROSS_COST: `layout`) and runs a convolution
direct only where its forward kernel's fills at least half. Plain Python with no imports:
codegen reads it without starting Numba; convolution.py takes the tiles' sizes.
"""

# along the strip: 16 registers of sums (8 loads and 2 broadcasts per 16 multiply-adds);
# the gradient's tile: 15 sums (3 + 5 loads per 15)
FILTERS, BLOCKS = 2, 8
GRAD_FILTERS, GRAD_TAPS = 3, 5
# across filters: 12 registers of sums, an input broadcast per multiply-add
ACROSS = 12
# ...so a multiply-add across filters costs about this many along the strip: codegen goes
# across only where that layout is this much fuller (measured: 3×32×32 images, 16 filters
# 3×3, fills 0.89 along and 0.99 across, the step took 1.19 × as long across)
ACROSS_COST = 1.3


def forward_fills(filters, ho, wo, wp, lanes):
    """(along the strip, across filters): the share of the sums the forward kernel computes
    that are outputs."""
    outputs, tile = ho * wo, lanes * BLOCKS  # (-(-a // b) * b: a rounded up to whole b's)
    along = filters / (-(-filters // FILTERS) * FILTERS) * outputs / (-(-ho * wp // tile) * tile)
    across = filters / (-(-filters // lanes) * lanes) * outputs / (-(-outputs // ACROSS) * ACROSS)
    return along, across


def gradient_fills(filters, taps, ho, wo, wp, lanes):
    """(along the strip, across filters) for the filter gradient's kernel."""
    along = filters / (-(-filters // GRAD_FILTERS) * GRAD_FILTERS) * \
        taps / (-(-taps // GRAD_TAPS) * GRAD_TAPS) * ho * wo / (-(-ho * wp // lanes) * lanes)
    across = filters / (-(-filters // lanes) * lanes) * taps / (-(-taps // ACROSS) * ACROSS)
    return along, across


def layout(fills):
    """The layout ("across_filters" or "along_strip") whose fills (as the functions above give
    them) promise the shorter run."""
    along, across = fills
    return "across_filters" if across > ACROSS_COST * along else "along_strip"
