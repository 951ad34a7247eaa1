"""Deep networks as lifted gated models (Zhang, Zhang & Pilanci 2025, deep reformulation).

A depth-L network (L in {2, 3, 4}: L - 1 hidden layers) gets its gate patterns from a random
network drawn once and stored: layer-1 weights W_1 (P_1 x d) and upper weights W_k
(P_k x P_{k-1}), k = 2..L-1. For a mapped feature vector x,

    z_1 = W_1 x,   D^(1) = 1[z_1 >= 0],   z_k = W_k relu(z_{k-1}),   D^(k) = 1[z_k >= 0].  (D0)

With a bias feature, unit 0 of every hidden layer of the random network is always on (the
first layer's gate is the constant feature, each upper unit 0 copies the unit 0 below), so
every point has at least one active path: without it a point whose units of some layer are all
off has f(x) = 0 for every network and its label could never be fitted (2-4% of the points
with 4-8 units per layer, measured).

Lifted gates. Every path through the hidden layers is one *lifted gate* g: a layer-1 unit j_1
and, for each upper layer k >= 2, a *slot* a_k in [0, 2 P_k) that names a unit
j_k = a_k mod P_k and a sign s_k = +1 (a_k < P_k) or -1. The gate index is row-major over
(a_{L-1}, ..., a_2, j_1), so there are G = P_1 prod_{k>=2} 2 P_k gates (G = P for L = 2).
Each gate g owns two blocks u_g, v_g in R^d (the layer-1 sign s_1 = +1 / -1), which is the
two-layer parameterisation of :mod:`learner.version_space` with P replaced by G.

The lifted model is linear in theta:

    f(x) = sum_g c_g(x) x^T (u_g - v_g),
    c_g(x) = prod_{k>=2} s_k(g) * prod_{k>=1} D^(k)_{j_k(g)}(x).                           (D1)

On a labeled point it equals an ordinary depth-L ReLU network (:func:`network_layers`) when
the pattern-consistency rows of every layer hold:

    layer 1:    (2 D^(1)_{j_1(g)}(x) - 1) x^T u_g >= 0,  same for v_g,                      (D2)
    layer k>=2: (2 D^(k)_{j_k}(x) - 1) sum_{g in B} c^(k-1)_g(x) x^T (u_g - v_g) >= 0,        (D3)

one D3 row per prefix (a_{L-1}, ..., a_k); B is the contiguous run of gates with that prefix and
c^(k-1) the coefficient (D1) of the sub-network below layer k (the product over layers < k).
D3 rows touch several blocks, exactly like label cuts, so the structured barrier treats them
as extra cuts per label; D2 rows are the usual per-block pattern rows.

Network (D4): layer-1 units relu(x^T u_g), relu(x^T v_g); a unit of layer k >= 2 (one per
prefix) is relu(sum over its children of sign * child), the children's sign being s_1 for
layer 2 and s_{k-1} above; the output sums the top units times s_{L-1}. Under D2 a layer-1
unit equals D^(1) x^T u, under D3 a layer-k unit equals D^(k) times its pre-activation, so the
network's output is f(x) (D1) on every point where the rows hold.

The reference three-layer code multiplies each outer term by the pattern of the last inner
index instead of its own unit (``Di[i, j]`` for ``Di[i, l]``); here every coefficient is built
by broadcasting over named axes, and the tests compare (D1) and (D4) with a direct forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
Bits = NDArray[np.bool_]


def forward_bits(X: NDArray[np.floating], first: Array, upper: Sequence[Array]) -> tuple[Bits, ...]:
    """Pattern bits of every hidden layer of the stored random network (eq. D0).

    Every dot product is a plain einsum (no BLAS), summed in the same order whatever the batch,
    so a point gets the same bits when labeled alone, in a batch, or when a state is rebuilt.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Mapped features.
    first : ndarray of shape (P_1, d)
    upper : sequence of ndarray, shapes (P_k, P_{k-1}) for k = 2..L-1

    Returns
    -------
    tuple of L - 1 bool arrays, shapes (n, P_1), ..., (n, P_{L-1})
    """
    X64 = np.asarray(X, dtype=np.float64)
    z = np.einsum("nd,pd->np", X64, first, optimize=False)
    bits = [z >= 0]
    for W in upper:
        z = np.einsum("np,qp->nq", np.maximum(z, 0.0), W, optimize=False)
        bits.append(z >= 0)
    return tuple(bits)


def n_lifted_gates(sizes: Sequence[int]) -> int:
    """G = P_1 prod_{k>=2} 2 P_k for per-layer gate counts ``sizes`` = (P_1, ..., P_{L-1})."""
    G = int(sizes[0])
    for P in sizes[1:]:
        G *= 2 * int(P)
    return G


def _slot_signs(P: int) -> Array:
    """s(a) for the 2P slots of one layer: +1 for a < P, -1 after (shape (2P,))."""
    return np.concatenate([np.ones(P), -np.ones(P)])


@dataclass(frozen=True)
class LiftedRows:
    """Coefficients of the lifted model on n points (all float64 in {-1, 0, +1}).

    Attributes
    ----------
    output : ndarray of shape (n, G)
        c_g(x) of eq. D1.
    structural : ndarray of shape (n, R, G)
        The D3 rows, R = sum_{k>=2} prod_{m>=k} 2 P_m (zero columns outside each row's run).
    """

    output: Array
    structural: Array


def lifted_output(bits: Sequence[Bits]) -> Array:
    """c_g(x) of eq. D1 only, shape (n, G): what scoring and prediction need, without the
    dense D3 rows of :func:`lifted_rows`."""
    c = np.asarray(bits[0], dtype=np.float64)
    for Dk in bits[1:]:
        c = _prepend_layer(c, Dk)
    return c


def _prepend_layer(c: Array, Dk: Bits) -> Array:
    """c^(k) over (a_k, lower) from c^(k-1): s_k D^(k)_{j_k} c^(k-1) (eq. D1, one more layer),
    shape (n, 2 P_k * width)."""
    Pk = Dk.shape[1]
    slot = _slot_signs(Pk)[None, :] * np.tile(Dk.astype(np.float64), (1, 2))
    return (slot[:, :, None] * c[:, None, :]).reshape(c.shape[0], -1)


def lifted_rows(bits: Sequence[Bits]) -> LiftedRows:
    """Coefficients of eq. D1 and the D3 rows from per-layer pattern bits.

    Parameters
    ----------
    bits : sequence of bool arrays, shapes (n, P_1), ..., (n, P_{L-1}) (see :func:`forward_bits`)

    Returns
    -------
    LiftedRows
    """
    c = np.asarray(bits[0], dtype=np.float64)  # c^(1) = D^(1), shape (n, P_1)
    n = c.shape[0]
    sizes = [b.shape[1] for b in bits]
    G = n_lifted_gates(sizes)
    families: list[Array] = []
    for Dk in bits[1:]:  # layers k = 2 .. L-1
        Pk = Dk.shape[1]
        width = c.shape[1]  # gates under one layer-k slot (the run B of eq. D3)
        above = G // (2 * Pk * width)  # prefixes of the layers above k
        row_sign = np.tile(2.0 * Dk - 1.0, (1, 2))  # (n, 2 P_k): 2 D^(k)_{j(a)} - 1 per slot
        rows = 2 * Pk * above
        fam = np.zeros((n, rows, rows, width))
        values = row_sign[:, :, None] * c[:, None, :]  # (n, 2P_k, width)
        idx = np.arange(rows)
        # Row r = (prefix above k, a_k) covers the run of gates [r w, (r + 1) w) (eq. D3).
        fam[:, idx, idx, :] = np.tile(values, (1, above, 1))
        families.append(fam.reshape(n, rows, G))
        c = _prepend_layer(c, Dk)
    # ``c`` now spans all G gates: the output coefficients of eq. D1.
    structural = np.concatenate(families, axis=1) if families else np.zeros((n, 0, G))
    return LiftedRows(output=c, structural=structural)


def first_layer_patterns(bits: Sequence[Bits]) -> Bits:
    """D^(1)_{j_1(g)} for every lifted gate (the D2 pattern bits), shape (n, G)."""
    first = np.asarray(bits[0])
    G = n_lifted_gates([b.shape[1] for b in bits])
    return np.tile(first, (1, G // first.shape[1]))


def start_blocks(first: Array, upper: Sequence[Array], spread: float = 1.0) -> Array:
    """A point strictly inside every D2 and D3 row: the stored random network, lifted.

    With u_g = gamma_g^+ w_{j_1}, v_g = gamma_g^- w_{j_1} (w_j the rows of W_1) and positive
    gammas chosen top-down so that sum_s s gamma^s = gamma_parent W_k[j_k, j_{k-1}], every
    lifted pre-activation is a positive multiple of the random network's (eq. D0): each D2 and
    D3 row then has slack |z| > 0 wherever the random network's z is nonzero. Only the label
    cuts (f = 0 there, the two signs of the top layer cancel) are left for phase I.

    Parameters
    ----------
    first : ndarray of shape (P_1, d)
    upper : sequence of ndarray, shapes (P_k, P_{k-1})
    spread : float
        The common positive part of every gamma.

    Returns
    -------
    ndarray of shape (2, G, d): u blocks, then v blocks.
    """
    P1 = first.shape[0]
    if not upper:  # depth 2: u_g = v_g = w_g, f = 0 (the two-layer cold start)
        gp = gm = np.ones(P1)
    else:
        # gamma per prefix (a_{L-1}, ..., a_k), top-down; the top layer's slots all get 1.
        gamma = np.ones(2 * upper[-1].shape[0])
        for k in range(len(upper) + 1, 1, -1):  # layers L-1 .. 2; W_k = upper[k - 2]
            W = upper[k - 2]  # (P_k, P_{k-1})
            w = W[np.arange(gamma.size) % W.shape[0]]  # W_k[j_k, :] under each prefix
            pos = spread + np.maximum(w, 0.0)  # gamma^+ - gamma^- = gamma_parent W_k[j_k, j]
            neg = spread + np.maximum(-w, 0.0)
            if k > 2:  # children are the 2 P_{k-1} slots of layer k - 1 (sign, then unit)
                gamma = (gamma[:, None] * np.concatenate([pos, neg], axis=1)).ravel()
            else:  # children are layer-1 units: u takes the + part, v the - part
                gp = (gamma[:, None] * pos).ravel()
                gm = (gamma[:, None] * neg).ravel()
    tiled = np.tile(first, (gp.size // P1, 1))  # w_{j_1(g)} for every gate g
    return np.stack([gp[:, None] * tiled, gm[:, None] * tiled])


def network_layers(theta: Array, sizes: Sequence[int]) -> tuple[list[Array], Array]:
    """The ReLU network of eq. D4 for lifted weights ``theta``.

    Parameters
    ----------
    theta : ndarray of shape (K', 2, G, d)
    sizes : (P_1, ..., P_{L-1})

    Returns
    -------
    hidden : list of L - 1 arrays; hidden[0] of shape (2 K' G, d) holds the layer-1 weights
        (rows ordered (k, s_1, g)); hidden[i] of shape (units_i, units_{i-1}) has entries in
        {-1, 0, +1}.
    output : ndarray of shape (units_{L-1}, K')
    """
    K, _, G, d = theta.shape
    hidden: list[Array] = [theta.reshape(K * 2 * G, d)]
    # Units of the previous layer, per output k: (k, s_1, g) at layer 1.
    # Layer 2 units: (k, prefix over slots a_{L-1..2}); child (k, s_1, g) has prefix g // P_1.
    prev_sign = np.concatenate([np.ones(G), -np.ones(G)])  # s_1 of each (s_1, g)
    prev_parent = np.concatenate([np.arange(G), np.arange(G)]) // sizes[0]
    n_units = G // sizes[0]
    for k_layer in range(1, len(sizes)):
        n_prev = prev_sign.size
        W = np.zeros((K * n_units, K * n_prev))
        for k in range(K):
            W[k * n_units + prev_parent, k * n_prev + np.arange(n_prev)] = prev_sign
        hidden.append(W)
        # This layer's units are prefixes ending in a slot a_{k+1} of size 2 P_{k+1}:
        # its sign, and its parent prefix one layer up.
        P = sizes[k_layer]
        slots = np.arange(n_units) % (2 * P)
        prev_sign = np.where(slots < P, 1.0, -1.0)
        prev_parent = np.arange(n_units) // (2 * P)
        n_units = n_units // (2 * P)
    # n_units == 1 now: the output sums the top units with their signs.
    n_prev = prev_sign.size
    output = np.zeros((K * n_prev, K))
    for k in range(K):
        output[k * n_prev + np.arange(n_prev), k] = prev_sign
    return hidden, output
