"""Structured log-barrier of a version space, with a Newton solver that never builds A.

Notation (docs/learner.md, "Model"). A point theta holds K' x 2 x P blocks theta_{k,s,i} in R^r (s
= 0 for
u, s = 1 for v), stored as an array of shape (K', 2, P, r); J = 2 P K' blocks, G = P K' gate
groups (k, i). The labeled features in the current basis are F (L x r). With
Z = F theta^T (L x J):

    pattern slack   p_{l,k,s,i} = S_{l,i} Z_{l,k,s,i}                       S = 2 D - 1
    label slack     t_q = sum_{k,i} C_{q,k,i} (Z_{l(q),k,0,i} - Z_{l(q),k,1,i}) + b_q
    ball slack      s_b = R^2 - ||theta||^2

and the barrier is  phi = -sum log p - sum log t - log s_b.          (analytic centre, eq. AC)

Its Hessian is block-diagonal plus low rank (docs/learner.md, "Analytic centre"):

    H = blockdiag_j(B_j) + A^T A + beta beta^T,
    B_j   = F^T diag(1 / p_{:,j}^2) F + c I,      c = 2 / s_b           (pattern rows + ball)
    A     = rows a_q / t_q (only the w = u - v directions)               (label cuts)
    beta  = (2 / s_b) theta                                              (ball, rank one)

Solving H x = g uses Woodbury twice: the rank-one ball term by Sherman-Morrison, and the label
term either in "label space" (a Q x Q capacitance matrix) or in "gate space" (a G r x G r
system, cheaper once Q > G r). Both start from batched Cholesky factors of the B_j.

Phase I adds a scalar offset tau to selected rows (slack + omega * tau); the extra variable is
eliminated by a Schur complement in :mod:`learner._newton`.

Deeper networks (:mod:`learner.lift`) fit the same structure: P counts lifted gates (one block
pair per path through the hidden layers, eq. D2 rows per block) and the D3 rows of the upper
layers are label-cut rows with offset 0, so both Woodbury paths apply unchanged. Their number
(R per label and output) would make the Q x Q capacitance matrix large, but a D3 row only
touches the gates under one slot of the top hidden layer: ordered as [label rows | D3 rows of
top slot 1 | ... ], the capacitance is an arrow matrix whose D3 part is block-diagonal. The
STRUCTURED path factors each diagonal block (L R_m rows) and the Schur complement on the label
rows (L C rows), instead of one matrix of L (C + K' R) rows (eq. AC, Woodbury by blocks).

Multi-class cuts (depth 2) share their gate coefficients across the two classes they compare,
so the label-space capacitance of their Q = L (K - 1) rows is assembled from K per-class
L x L matrices (:class:`ClassCuts`, docs/learner.md, "Analytic centre", eq. MC), and products
with A and A^T go through per-class values: the same matrices, (K - 1)^2 and K - 1 times fewer
flops.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from numpy.typing import NDArray
from scipy.linalg import blas, lapack

from learner.config import Task
from learner.lift import lifted_rows
from learner.version_space import VersionSpace

Array = NDArray[np.float64]

# LAPACK triangular solves with a Cholesky factor (skip scipy.linalg.cho_solve's checks).
_potrs64 = lapack.dpotrs
_potrs32 = lapack.spotrs
_potrf64 = lapack.dpotrf
_potri64 = lapack.dpotri
_symv = blas.dsymv
_symm = blas.dsymm
# Inverse of a float32 Cholesky factor and products with it (preconditioner solves).
_trtri32 = lapack.strtri
_trmv32 = blas.strmv
_trmm32 = blas.strmm

#: Inner systems up to this size keep an explicit inverse; larger ones are solved with the
#: Cholesky factor (in float32 when only preconditioning).
_EXPLICIT_INVERSE_MAX = 1200
#: Inner systems larger than this may be formed and factored in float32 where the factor
#: only preconditions (``Barrier.factorize(single=True)``).
_SINGLE_PRECISION_MIN = 1200
#: Floats of the (m, Q, G) intermediate of one A X product chunk.
_APPLY_CHUNK = 8_000_000
#: Multi-class cuts go through per-class quantities (:class:`ClassCuts`); False gives the
#: generic products over all Q cuts (the same numbers up to roundoff; tests compare them).
_CLASS_CUTS = True
#: Soft version spaces with a smaller delta factor the Hessian rather than precondition CG by
#: its pattern blocks (eq. BJ): offsets that small leave cuts with tiny slacks, and near
#: MIN_SOFT_DELTA CG needed over 20 iterations per step (warm recentres 1.3-1.6x slower).
_BLOCK_MIN_DELTA = 1e-3
#: Above L r^2 floats the Khatri-Rao product F (x) F is not cached (B_j built in a loop); the
#: cache holds its upper triangle, about half of that.
_FF_CACHE_LIMIT = 40_000_000


class HessianPath(enum.Enum):
    """How the label-cut term of the Hessian is folded in (see module docstring)."""

    AUTO = "auto"
    LABEL_SPACE = "label-space"
    GATE_SPACE = "gate-space"
    #: Label space with the capacitance matrix factored by blocks (deeper networks only).
    STRUCTURED = "structured"


def span_basis(X: Array, rtol: float = 1e-10) -> Array | None:
    """Orthonormal basis of the row span of ``X``, or None when it is all of R^d.

    The analytic centre lies blockwise in this span (the ball is rotation-invariant and every
    other constraint only sees X theta_j), so when rank(X) < d the problem is solved in r
    coordinates per block: the "span path" of docs/learner.md, "Analytic centre".

    Parameters
    ----------
    X : ndarray of shape (n_labels, d)

    Returns
    -------
    ndarray of shape (d, r) with orthonormal columns, or None if r == d.
    """
    L, d = X.shape
    if L == 0:
        return np.zeros((d, 0))
    _, sv, vt = np.linalg.svd(X, full_matrices=False)
    r = int(np.sum(sv > rtol * sv[0])) if sv[0] > 0 else 0
    if r == d:
        return None
    return np.ascontiguousarray(vt[:r].T)


@dataclass
class Offsets:
    """Phase-I offsets: slack_row += omega_row * tau for the rows in V (zeros elsewhere).

    Attributes
    ----------
    pattern : ndarray of shape (n_labels, K', 2, P)
    label : ndarray of shape (n_cuts,)
    """

    pattern: Array
    label: Array


@dataclass
class Slacks:
    """Slacks at one point (offsets included when given)."""

    p: Array  # (L, K', 2, P)
    t: Array  # (Q,)
    sb: float

    def positive(self) -> bool:
        return bool(self.sb > 0 and np.all(self.p > 0) and np.all(self.t > 0))


@dataclass
class ClassCuts:
    """Multi-class label cuts in factored form: cut (l, j) has coefficient
    ``D[l] (e_{y[l]} - e_{other[l, j]})`` on the (class, gate) grid (eq. SV without D3 rows).

    Attributes
    ----------
    y : ndarray of int, shape (L,)
        Labeled class of each point.
    other : ndarray of int, shape (L, K - 1)
        The other classes, in the order of the cuts
        (:func:`learner.version_space.build_label_cuts`).
    D : ndarray of shape (L, P)
        The coefficient of x^T (u_ki - v_ki) in f_k at each point (the same for every class).
    """

    y: NDArray[np.intp]
    other: NDArray[np.intp]
    D: Array
    #: ``others[c]``: the classes other than c, in cut order, shape (K, K - 1).
    others: NDArray[np.intp]
    #: Labels sorted by class (stable), shape (L,); class c's are ``order[bounds[c]:bounds[c+1]]``.
    order: NDArray[np.intp]
    bounds: NDArray[np.intp]
    #: Cut indices ordered by (class of the label, j, label), shape (L (K - 1),).
    perm: NDArray[np.intp]

    def cut_values(self, s: Array) -> Array:
        """Cut values s_{l y_l} - s_{l a_lj} from per-class values s of shape (..., L, K);
        returns shape (..., L, K - 1)."""
        rows = np.arange(self.y.size)
        return s[..., rows, self.y][..., None] - s[..., rows[:, None], self.other]

    def class_weights(self, z: Array) -> Array:
        """Per-class weights c_lk = sum_j z_lj ([k = y_l] - [k = a_lj]) (the transpose of
        :meth:`cut_values`) for z of shape (..., L, K - 1); returns shape (..., L, K)."""
        L, C = self.other.shape
        rows = np.arange(L)
        c = np.zeros((*z.shape[:-1], C + 1))
        c[..., rows, self.y] = z.sum(axis=-1)
        for j in range(C):
            c[..., rows, self.other[:, j]] -= z[..., j]
        return c

    @classmethod
    def of(cls, vs: VersionSpace) -> ClassCuts:
        K = vs.n_classes
        y = vs.y.astype(np.intp)
        others = np.array([[k for k in range(K) if k != c] for c in range(K)], dtype=np.intp)
        order = np.argsort(y, kind="stable")
        bounds = np.searchsorted(y[order], np.arange(K + 1))
        cut = order[None, :] * (K - 1) + np.arange(K - 1)[:, None]  # (K - 1, L): cut (l, j)
        perm = np.concatenate([cut[:, bounds[c] : bounds[c + 1]].ravel() for c in range(K)]).astype(
            np.intp
        )
        return cls(
            y=y,
            other=others[y],
            D=vs.output_coef(),
            others=others,
            order=order,
            bounds=bounds,
            perm=perm,
        )


class Barrier:
    """The log-barrier of one version space in a fixed orthonormal basis.

    Parameters
    ----------
    vs : VersionSpace
        The (active) labeled points.
    basis : ndarray of shape (d, r) or None
        Orthonormal basis of the block coordinates; None means the identity (r = d).
    """

    def __init__(self, vs: VersionSpace, basis: Array | None) -> None:
        self.basis = basis
        self.F: Array = vs.X if basis is None else vs.X @ basis
        self.L, self.r = self.F.shape
        self.K = vs.n_outputs
        self.P = vs.n_gates
        self.G = self.K * self.P
        self.J = 2 * self.G
        self.radius = float(vs.radius)
        self.S: Array = 2.0 * vs.gate_patterns.astype(np.float64) - 1.0
        cuts = vs.label_cuts()
        self.C = cuts.per_label
        self.coef: Array = cuts.coef
        self.offset: Array = cuts.offset
        self.Q = self.coef.shape[0]
        self.F_lab: Array = self.F if self.C == 1 else np.repeat(self.F, self.C, axis=0)
        fnorm = np.linalg.norm(self.F, axis=1)
        # Row norms ||a|| of every constraint, used to normalise slacks into distances.
        self.norm_pattern: Array = np.broadcast_to(
            fnorm[:, None, None, None], (self.L, self.K, 2, self.P)
        ).copy()
        self.norm_label: Array = np.linalg.norm(self.F_lab, axis=1) * np.sqrt(
            2.0 * np.sum(self.coef**2, axis=(1, 2))
        )
        # Row groups of the STRUCTURED path: label cuts, then the D3 rows of each (output, top
        # slot), with the gates each group touches.
        n_struct = vs.n_structural
        self.C_label = self.C - self.K * n_struct
        self.groups: list[tuple[NDArray[np.intp], NDArray[np.intp]]] = []
        self.label_rows = np.zeros(0, dtype=np.intp)
        if n_struct and self.L:
            base = np.arange(self.L)[:, None] * self.C
            self.label_rows = (base + np.arange(self.C_label)).ravel()
            sizes = vs.layer_sizes
            n_top = 2 * sizes[-1]
            width = self.P // n_top  # gates under one top slot
            # Row r of the D3 family belongs to the top slot where its run starts.
            starts = np.argmax(np.abs(self._struct_pattern(vs)) > 0, axis=1)
            top_of_row = starts // width
            for k in range(self.K):
                for m in range(n_top):
                    r_idx = np.flatnonzero(top_of_row == m)
                    rows = (base + self.C_label + k * n_struct + r_idx).ravel()
                    gates = k * self.P + m * width + np.arange(width)
                    self.groups.append((rows, gates))
        # Multi-class label cuts without D3 rows: cut (l, j) is f_{y_l} - f_{a_lj} with the same
        # gate coefficients D_l on both classes (eq. SV), so products with A and the
        # capacitance matrix go through per-class quantities (HessianFactor._class_capacitance).
        self.classes: ClassCuts | None = None
        if _CLASS_CUTS and vs.task is Task.MULTICLASS and not n_struct and self.L:
            self.classes = ClassCuts.of(vs)
        #: Whether Newton steps may be preconditioned by the Hessian without its label cuts
        #: (:class:`BlockPreconditioner`): soft classification cuts keep a slack of at least
        #: their offset delta R ||a||, so they stay a small part of H (docs/learner.md,
        #: "Analytic centre", eq. BJ). Hard cuts and D3 rows (offset 0) get tiny slacks
        #: near the centre, and conjugate gradients would need hundreds of iterations.
        self.block_preconditioning = bool(vs.soft) and vs.delta >= _BLOCK_MIN_DELTA and not n_struct
        # The Khatri-Rao product F (x) F on the upper triangle only (B_j is symmetric):
        # column (a, b), a <= b, holds F_:a F_:b, so B_j's triangle is one GEMM with half the
        # flops of the full product.
        self._ff: Array | None = None
        iu, ju = np.triu_indices(self.r)
        self._tri_upper = iu * self.r + ju
        self._tri_lower = ju * self.r + iu
        if self.L * self.r * self.r <= _FF_CACHE_LIMIT:
            # Row a of the triangle at a time: no temporary larger than F.
            self._ff = np.empty((self.L, iu.size))
            col = 0
            for a in range(self.r):
                width = self.r - a
                np.multiply(self.F[:, a : a + 1], self.F[:, a:], out=self._ff[:, col : col + width])
                col += width

    @staticmethod
    def _struct_pattern(vs: VersionSpace) -> Array:
        """Which gates each D3 row can touch, shape (R, G): the union of its runs' supports
        over every point (a row's run is fixed by its index, so one nonzero point suffices;
        the all-ones bits give every run its full support)."""
        ones = tuple(np.ones((1, P), dtype=bool) for P in vs.layer_sizes)
        return lifted_rows(ones).structural[0]

    # ------------------------------------------------------------------ coordinates
    @property
    def n_rows(self) -> int:
        return self.L * self.J + self.Q

    def to_reduced(self, theta_full: Array) -> Array:
        """Full-space point (K', 2, P, d) -> basis coordinates (K', 2, P, r)."""
        return theta_full if self.basis is None else theta_full @ self.basis

    def to_full(self, theta: Array) -> Array:
        """Basis coordinates (K', 2, P, r) -> full-space point (K', 2, P, d)."""
        return theta if self.basis is None else theta @ self.basis.T

    # ------------------------------------------------------------------ evaluation
    def z(self, theta: Array) -> Array:
        """Z = F theta^T, shape (L, K', 2, P)."""
        flat = theta.reshape(self.J, self.r)
        return (self.F @ flat.T).reshape(self.L, self.K, 2, self.P)

    def label_values(self, Z: Array) -> Array:
        """sum_{k,i} C_{q,k,i} (Z_u - Z_v) for every cut q (offset excluded), shape (Q,)."""
        if self.classes is not None:
            # Per-class values s_lk = sum_i D_li (Z_u - Z_v)_lki first (eq. MC).
            s = np.einsum("lkp,lp->lk", Z[:, :, 0, :] - Z[:, :, 1, :], self.classes.D)
            return self.classes.cut_values(s).reshape(self.Q)
        wd = (Z[:, :, 0, :] - Z[:, :, 1, :]).reshape(self.L, 1, self.G)
        c = self.coef.reshape(self.L, self.C, self.G)
        return np.einsum("lcg,lcg->lc", c, np.broadcast_to(wd, c.shape)).reshape(self.Q)

    def slacks(
        self, theta: Array, tau: float = 0.0, offsets: Offsets | None = None, Z: Array | None = None
    ) -> Slacks:
        if Z is None:
            Z = self.z(theta)
        p = self.S[:, None, None, :] * Z
        t = self.label_values(Z) + self.offset
        if offsets is not None:
            p = p + offsets.pattern * tau
            t = t + offsets.label * tau
        sb = self.radius**2 - float(np.sum(theta * theta))
        return Slacks(p=p, t=t, sb=sb)

    @staticmethod
    def value(sl: Slacks) -> float:
        """phi = -sum log p - sum log t - log s_b (eq. AC); +inf outside the domain."""
        if not sl.positive():
            return float("inf")
        return float(-np.sum(np.log(sl.p)) - np.sum(np.log(sl.t)) - np.log(sl.sb))

    def gradient(self, theta: Array, sl: Slacks) -> Array:
        """d phi / d theta, shape (K', 2, P, r)."""
        gz = -self.S[:, None, None, :] / sl.p  # d(-log p)/dZ
        if self.classes is not None:
            cls = self.classes.class_weights((-1.0 / sl.t).reshape(self.L, self.C))
            lab = cls[:, :, None] * self.classes.D[:, None, :]
        else:
            lab = (-self.coef / sl.t[:, None, None]).reshape(self.L, self.C, self.K, self.P).sum(1)
        gz[:, :, 0, :] += lab
        gz[:, :, 1, :] -= lab
        g = (gz.reshape(self.L, self.J).T @ self.F).reshape(self.K, 2, self.P, self.r)
        return g + (2.0 / sl.sb) * theta

    def offset_gradient(self, theta: Array, sl: Slacks, offsets: Offsets) -> tuple[Array, float]:
        """Mixed second derivative h = d^2 phi / d theta d tau and d phi / d tau.

        Returns
        -------
        h : ndarray of shape (K', 2, P, r)
        g_tau : float
        """
        hz = offsets.pattern * self.S[:, None, None, :] / sl.p**2
        lab = (
            (self.coef * (offsets.label / sl.t**2)[:, None, None])
            .reshape(self.L, self.C, self.K, self.P)
            .sum(1)
        )
        hz[:, :, 0, :] += lab
        hz[:, :, 1, :] -= lab
        h = (hz.reshape(self.L, self.J).T @ self.F).reshape(self.K, 2, self.P, self.r)
        g_tau = -float(np.sum(offsets.pattern / sl.p) + np.sum(offsets.label / sl.t))
        return h, g_tau

    def offset_curvature(self, sl: Slacks, offsets: Offsets) -> float:
        """d^2 phi / d tau^2."""
        return float(np.sum((offsets.pattern / sl.p) ** 2) + np.sum((offsets.label / sl.t) ** 2))

    def direction_change(self, d_theta: Array, d_tau: float, offsets: Offsets | None) -> Slacks:
        """Change of every slack along (d_theta, d_tau), to line-search without refactoring."""
        dz = self.z(d_theta)
        dp = self.S[:, None, None, :] * dz
        dt = self.label_values(dz)
        if offsets is not None:
            dp = dp + offsets.pattern * d_tau
            dt = dt + offsets.label * d_tau
        return Slacks(p=dp, t=dt, sb=0.0)

    # ------------------------------------------------------------------ Hessian
    def hess_vec(self, theta: Array, sl: Slacks, V: Array) -> Array:
        """H V without forming H, for V of shape (m, K', 2, P, r); cost O(m L J r)."""
        return self.hess_operator(theta, sl)(V)

    def hess_operator(self, theta: Array, sl: Slacks) -> Any:
        """V -> H V at a fixed point, with the row weights computed once.

        Used by the preconditioned conjugate-gradient Newton steps (one product per CG
        iteration), where a factorization from an earlier iterate is the preconditioner.
        """
        L, J, r, K, P, G, C = self.L, self.J, self.r, self.K, self.P, self.G, self.C
        w_pat = (1.0 / sl.p**2).reshape(L, J)  # pattern rows: S^2 = 1
        w_lab = (1.0 / sl.t**2).reshape(L, C)
        c = self.coef.reshape(L, C, G)
        cb = 2.0 / sl.sb
        rank_one = 4.0 / sl.sb**2
        flat_theta = theta.ravel()
        F = self.F
        cc = self.classes

        def label_term(dwd: Array) -> Array:
            """A^T A on the w = u - v part, per (point, class, gate): shape (L, K', P)."""
            if cc is None:
                lab = np.einsum("lcg,lcg->lc", c, np.broadcast_to(dwd.reshape(L, 1, G), c.shape))
                lab *= w_lab
                return np.einsum("lcg,lc->lg", c, lab).reshape(L, K, P)
            # Multi-class cuts through the per-class values s_lk = sum_i D_li dw_lki (eq. MC):
            # K - 1 times fewer flops than the generic coefficients.
            s = np.einsum("lkp,lp->lk", dwd, cc.D)
            cls = cc.class_weights(cc.cut_values(s) * w_lab)
            return cls[:, :, None] * cc.D[:, None, :]

        def apply(V: Array) -> Array:
            out = np.empty_like(V)
            for i in range(V.shape[0]):  # m is 1 or 2 here: plain 2-D products are fastest
                dz = F @ V[i].reshape(J, r).T  # (L, J)
                gz = dz * w_pat
                dz4 = dz.reshape(L, K, 2, P)
                acc = label_term(dz4[:, :, 0, :] - dz4[:, :, 1, :])
                gz4 = gz.reshape(L, K, 2, P)
                gz4[:, :, 0, :] += acc
                gz4[:, :, 1, :] -= acc
                res = (gz.T @ F).reshape(V[i].shape)
                res += cb * V[i] + (rank_one * float(V[i].ravel() @ flat_theta)) * theta
                out[i] = res
            return out

        return apply

    def pattern_blocks(self, wp: Array, c: float) -> Array:
        """B_j = F^T diag(wp_:j) F + c I for every block j: the pattern rows' part of the
        Hessian (weights 1/p^2) and the isotropic part of the ball; shape (J, r, r).

        Parameters
        ----------
        wp : ndarray of shape (L, J)
            Row weights (0 drops a row).
        c : float
        """
        J, r = self.J, self.r
        if self._ff is not None:
            tri = wp.T @ self._ff  # (J, r (r + 1) / 2)
            B = np.empty((J, r, r))
            flat = B.reshape(J, r * r)
            flat[:, self._tri_upper] = tri
            flat[:, self._tri_lower] = tri
        else:
            B = np.empty((J, r, r))
            for j in range(J):
                B[j] = (self.F.T * wp[:, j]) @ self.F
        idx = np.arange(r)
        B[:, idx, idx] += c
        return B

    def block_preconditioner(self, theta: Array, sl: Slacks) -> BlockPreconditioner:
        """blockdiag(B) + beta beta^T at ``theta``: H without its label cuts (eq. BJ)."""
        return BlockPreconditioner(self, theta, sl)

    def choose_path(self, path: HessianPath) -> HessianPath:
        if path is HessianPath.STRUCTURED and not self.groups:
            path = HessianPath.AUTO  # nothing to structure (depth 2, or no labels)
        if path is not HessianPath.AUTO:
            return path
        gr = self.G * self.r
        cost_label = self.Q**2 * gr + self.Q**3 / 3
        if self.classes is not None:
            # Per-class matrices (HessianFactor._class_capacitance): K L^2 P r, not Q^2 G r.
            cost_label = self.L**2 * gr + self.Q**3 / 3
        cost_gate = gr**2 * self.Q + gr**3 / 3
        best = HessianPath.LABEL_SPACE if cost_label <= cost_gate else HessianPath.GATE_SPACE
        if self.groups:
            n_l = self.label_rows.size
            cost_struct = n_l**2 * gr + n_l**3 / 3
            for rows, gates in self.groups:
                n_m, wr = rows.size, gates.size * self.r
                cost_struct += n_m**2 * wr + n_m**3 / 3 + n_m * n_l * (wr + n_m + n_l)
            if cost_struct < min(cost_label, cost_gate):
                best = HessianPath.STRUCTURED
        return best

    def factorize(
        self,
        theta: Array,
        sl: Slacks,
        path: HessianPath = HessianPath.AUTO,
        *,
        single: bool = False,
    ) -> HessianFactor:
        """Factor the barrier Hessian at ``theta`` (offsets enter through ``sl`` only).

        ``single=True`` allows the inner matrix to be formed and factored in float32 when it
        is large (see :class:`HessianFactor`); the factor is then a preconditioner only. When
        float32 cannot factor it (positive definite only in float64's precision), it is
        factored again in float64, so ``single`` never changes what succeeds.
        """
        chosen = self.choose_path(path)
        if single:
            try:
                return HessianFactor(self, theta, sl, chosen, single=True)
            except np.linalg.LinAlgError:
                pass
        return HessianFactor(self, theta, sl, chosen)


class HessianFactor:
    """Factorization of H = blockdiag(B) + A^T A + beta beta^T (see module docstring).

    Exposes :meth:`solve`, :meth:`logdet` and :meth:`sample`; nothing here forms an n x n
    matrix (n = J r).
    """

    def __init__(
        self, bar: Barrier, theta: Array, sl: Slacks, path: HessianPath, single: bool = False
    ) -> None:
        self.bar = bar
        self.path = path
        self._chol32: NDArray[np.float32] | None = None
        inner = bar.Q if path is HessianPath.LABEL_SPACE else bar.G * bar.r
        #: Whether the inner matrix was formed and factored in float32 (large label- or
        #: gate-space systems when asked): twice as fast, and accurate enough to
        #: precondition conjugate gradients, which is all such a factor is used for.
        self.single = (
            single and path is not HessianPath.STRUCTURED and inner > _SINGLE_PRECISION_MIN
        )
        low = np.float32 if self.single else np.float64
        #: Whether solves with this factor are only fit to precondition conjugate gradients
        #: (float32, or gate-space blocks in the STRUCTURED path).
        self.inexact = self.single
        K, P, r, L, G, J = bar.K, bar.P, bar.r, bar.L, bar.G, bar.J
        c = 2.0 / sl.sb
        self.c = c
        B = bar.pattern_blocks((1.0 / sl.p**2).reshape(L, J), c)
        self._B = B  # its Cholesky factors are only needed for logdet() and sample()
        self._chol_B: Array | None = None
        # Explicit inverses (J small r x r blocks): every later solve is a batched mat-vec.
        self.B_inv = _block_inverse(B)  # (J, r, r)
        binv = self.B_inv.reshape(K, 2, P, r, r)
        # D_g = B_u^{-1} + B_v^{-1}: the label rows only see w = u - v.
        Dg = (binv[:, 0] + binv[:, 1]).reshape(G, r, r)
        self.cs = (bar.coef / sl.t[:, None, None]).reshape(bar.Q, G)  # C_q / t_q
        self.inv_t: Array = 1.0 / sl.t
        self._blocks: list[_RowBlock | _GateBlock] = []
        self._perm: NDArray[np.intp] | None = None
        if path is HessianPath.STRUCTURED:
            Rg = _batched_cholesky(Dg)
            logdet_inner = self._factor_structured(Rg, gate_blocks=single)
        elif path is HessianPath.LABEL_SPACE and bar.classes is not None:
            self._perm = bar.classes.perm
            cap = self._class_capacitance(_batched_cholesky(Dg), low)
            self.chol_inner = _cholesky(cap)
            logdet_inner = 2.0 * float(np.sum(np.log(np.diagonal(self.chol_inner))))
        elif path is HessianPath.LABEL_SPACE:
            Rg = _batched_cholesky(Dg)
            # E = [diag(c_g) F R_g]_g in one GEMM: F (Q x r) times [R_1 ... R_G] (r x G r).
            E2 = bar.F_lab @ Rg.transpose(1, 0, 2).reshape(r, G * r)
            E2.reshape(bar.Q, G, r)[...] *= self.cs[:, :, None]
            E2 = E2.astype(low, copy=False)
            cap = E2 @ E2.T  # A B^{-1} A^T (a symmetric rank-k update)
            cap[np.diag_indices_from(cap)] += 1.0
            self.chol_inner = _cholesky(cap)
            logdet_inner = 2.0 * float(np.sum(np.log(np.diagonal(self.chol_inner))))
        else:
            Ld = _batched_cholesky(Dg)
            logdet_D = 2.0 * float(np.sum(np.log(np.diagonal(Ld, axis1=1, axis2=2))))
            ldinv = np.linalg.inv(Ld)
            self.D_inv = np.matmul(ldinv.transpose(0, 2, 1), ldinv)  # (G, r, r)
            # Formed directly in ``low`` precision: at L = 10,000 it is a Q x G r matrix of
            # 20 million numbers, whose float64 copy cost as much as half the product below.
            gm3: NDArray[Any] = np.empty((bar.Q, G, r), dtype=low)
            np.multiply(self.cs.astype(low)[:, :, None], bar.F_lab.astype(low)[:, None, :], out=gm3)
            gm = gm3.reshape(bar.Q, G * r)
            sg = gm.T @ gm  # A^T A restricted to w
            for g in range(G):
                sg[g * r : (g + 1) * r, g * r : (g + 1) * r] += self.D_inv[g]
            self.chol_inner = _cholesky(sg)
            logdet_inner = logdet_D + 2.0 * float(np.sum(np.log(np.diagonal(self.chol_inner))))
        self._tri32: NDArray[np.float32] | None = None
        if self.chol_inner.dtype == np.float32:
            # Kept in float32: every solve with it preconditions (see _inner_solve_factored).
            self._chol32 = np.asfortranarray(self.chol_inner)
            tri, info = _trtri32(self._chol32, lower=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"trtri failed (info={info})")
            self._tri32 = np.asfortranarray(tri)
        else:
            self.chol_inner = np.asfortranarray(self.chol_inner)
        self._inner_inv: Array | None = None
        if path is not HessianPath.STRUCTURED and self.chol_inner.shape[0] <= _EXPLICIT_INVERSE_MAX:
            self._inner_inv = _cho_inverse(self.chol64)
        # Ball: rank-one term beta beta^T by Sherman-Morrison.
        self.beta = (2.0 / sl.sb) * theta
        self.z_beta = self._solve0(self.beta[None])[0]
        self.denom = 1.0 + float(np.sum(self.beta * self.z_beta))
        self._logdet_rest = logdet_inner + float(np.log(self.denom))

    @property
    def chol64(self) -> Array:
        """The inner Cholesky factor in float64 (Fortran order), converted once if needed."""
        if self.chol_inner.dtype != np.float64:
            self.chol_inner = np.asfortranarray(self.chol_inner, dtype=np.float64)
        return self.chol_inner

    def _class_capacitance(self, Rg: Array, low: type) -> Array:
        """The capacitance I + A B^{-1} A^T of multi-class cuts from K per-class matrices.

        Cut (l, j) is f_{y_l} - f_{a_lj} with a_lj = ``other[l, j]`` (:class:`ClassCuts`), and
        A B^{-1} A^T only sees w = u - v through D_g = B_u^{-1} + B_v^{-1} (module
        docstring). With N_k = sum_i diag(D_:i) F D_ki F^T diag(D_:i) (L x L, one per class):

            t_lj t_l'j' (A B^{-1} A^T)_{(l,j),(l',j')}
              = ([y_l = y_l'] - [y_l = a_l'j']) N_{y_l} + ([a_lj = a_l'j'] - [a_lj = y_l']) N_{a_lj}

        (entries (l, l') of each N; docs/learner.md, eq. MC). Forming the N_k costs K L^2 P r
        flops instead of the Q^2 K P r of E E^T over all Q = L (K - 1) cuts: (K - 1)^2 times
        fewer. The cuts are ordered by (class of the label, j, label) (``ClassCuts.perm``),
        so every block of the matrix between two (class, j) groups is alpha N_c + beta N_a on
        one slice.

        Parameters
        ----------
        Rg : ndarray of shape (G, r, r)
            Lower Cholesky factors of the D_g.
        low : type
            np.float64, or np.float32 for a preconditioner-only factor.

        Returns
        -------
        ndarray of shape (Q, Q)
            The permuted capacitance, in ``low`` precision.
        """
        bar = self.bar
        cc = bar.classes
        assert cc is not None
        K, P, r = bar.K, bar.P, bar.r
        C = K - 1
        order, bounds = cc.order, cc.bounds
        F = bar.F[order]
        D = cc.D[order]
        L = F.shape[0]
        N: NDArray[Any] = np.empty((K, L, L), dtype=low)
        for k in range(K):
            # E_k = [diag(D_:i) F R_ki]_i, one GEMM; N_k = E_k E_k^T (a symmetric rank-k update).
            E = F @ Rg[k * P : (k + 1) * P].transpose(1, 0, 2).reshape(r, P * r)
            E.reshape(L, P, r)[...] *= D[:, :, None]
            E = E.astype(low, copy=False)
            N[k] = E @ E.T
        inv_t: NDArray[Any] = self.inv_t[cc.perm].astype(low)
        cap: NDArray[Any] = np.empty((L * C, L * C), dtype=low)
        others = cc.others
        for c in range(K):
            rc = slice(bounds[c], bounds[c + 1])
            for j in range(C):
                a = int(others[c, j])
                row = slice(
                    C * bounds[c] + j * (bounds[c + 1] - bounds[c]),
                    C * bounds[c] + (j + 1) * (bounds[c + 1] - bounds[c]),
                )
                for c2 in range(K):
                    rc2 = slice(bounds[c2], bounds[c2 + 1])
                    n2 = bounds[c2 + 1] - bounds[c2]
                    for j2 in range(C):
                        a2 = int(others[c2, j2])
                        col = slice(C * bounds[c2] + j2 * n2, C * bounds[c2] + (j2 + 1) * n2)
                        alpha = float(c == c2) - float(c == a2)
                        beta = float(a == a2) - float(a == c2)
                        blk = cap[row, col]
                        if alpha and beta:
                            np.multiply(N[c, rc, rc2], alpha, out=blk)
                            blk += beta * N[a, rc, rc2]
                        elif alpha:
                            np.multiply(N[c, rc, rc2], alpha, out=blk)
                        elif beta:
                            np.multiply(N[a, rc, rc2], beta, out=blk)
                        else:
                            blk[...] = 0.0
        cap *= inv_t[:, None]
        cap *= inv_t[None, :]
        cap[np.diag_indices_from(cap)] += 1.0
        # Symmetric (each block's mirror sums the same two terms, each N_k is a symmetric
        # rank-k update) up to the last bit of the 1/t scaling, and LAPACK reads one triangle:
        # the transpose is the same matrix in Fortran order, factored without a copy.
        return cap.T

    def _factor_structured(self, Rg: Array, gate_blocks: bool = False) -> float:
        """Factor the arrow-shaped capacitance I + A B^{-1} A^T by blocks (module docstring).

        Rows: the label cuts (l), then one group m per (output, top slot) of D3 rows, which
        only touch that group's gates. With E the rows of A B^{-1/2} (E E^T + I = capacitance),
        E_l^m the label rows' columns of group m's gates (sum_m E_l^m E_l^m^T = E_l E_l^T: the
        groups partition the gates) and A_mm = E_m E_m^T + I, the Schur complement on l is

            S = I + sum_m (E_l^m E_l^m^T - C_m^T A_mm^{-1} C_m),   C_m = E_m E_l^m^T.

        A group is factored in row space: A_mm = L_m L_m^T, Y_m = L_m^{-1} C_m, and its term is
        E_l^m E_l^m^T - Y_m^T Y_m. With ``gate_blocks``, a group with more rows than gate
        columns (depth 4: 5 L rows against 16 r columns) is factored in gate space instead,
        by Woodbury on A_mm (docs/learner.md, "Deep networks", eq. DB): with M_m = E_m^T E_m,
        A_mm^{-1} = I - E_m (I + M_m)^{-1} E_m^T, so its term is
        E_l^m (I + M_m)^{-1} E_l^m^T = Z_m^T Z_m with I + M_m = L_m L_m^T, Z_m = L_m^{-1} E_l^m^T,
        and log det A_mm = log det (I + M_m). That is several times cheaper but cancels
        catastrophically in rows with tiny slacks (huge rows of E_m), so such a factor only
        preconditions (``inexact``). Sets ``chol_inner`` = chol(S) and ``_blocks``; returns
        log det of the capacitance = sum_m log det A_mm + log det S.
        """
        bar = self.bar
        r = bar.r
        lab = bar.label_rows
        # E_l: every gate's columns (label cuts touch them all), as in the LABEL_SPACE path.
        E_l = bar.F_lab[lab] @ Rg.transpose(1, 0, 2).reshape(r, bar.G * r)
        E_l.reshape(lab.size, bar.G, r)[...] *= self.cs[lab][:, :, None]
        S = np.zeros((lab.size, lab.size))
        S[np.diag_indices_from(S)] = 1.0
        El3 = E_l.reshape(lab.size, bar.G, r)
        F_l = np.ascontiguousarray(bar.F_lab[lab])
        logdet = 0.0
        for rows, gates in bar.groups:
            w = gates.size
            E_m = bar.F_lab[rows] @ Rg[gates].transpose(1, 0, 2).reshape(r, w * r)
            csg = self.cs[np.ix_(rows, gates)]
            E_m.reshape(rows.size, w, r)[...] *= csg[:, :, None]
            El_m = np.ascontiguousarray(El3[:, gates, :].reshape(lab.size, w * r))
            if gate_blocks and rows.size > w * r:
                self.inexact = True
                IpM = E_m.T @ E_m
                IpM[np.diag_indices_from(IpM)] += 1.0
                L_m = _cholesky(IpM)
                Z_m = scipy.linalg.solve_triangular(L_m, El_m.T, lower=True, check_finite=False)
                S += Z_m.T @ Z_m
                # Products with E_m and E_l^m go through their factors (F rows, C_q / t_q,
                # R_g): a few MB instead of the rows x (w r) matrices, read twice per solve.
                self._blocks.append(
                    _GateBlock(
                        _ScaledRows(np.ascontiguousarray(bar.F_lab[rows]), csg, Rg[gates]),
                        _ScaledRows(F_l, self.cs[np.ix_(lab, gates)], Rg[gates]),
                        np.asfortranarray(L_m),
                    )
                )
            else:
                A_mm = E_m @ E_m.T
                A_mm[np.diag_indices_from(A_mm)] += 1.0
                L_m = _cholesky(A_mm)
                cross = E_m @ El_m.T  # C_m = E_m E_l^m^T
                Y_m = scipy.linalg.solve_triangular(L_m, cross, lower=True, check_finite=False)
                S += El_m @ El_m.T
                S -= Y_m.T @ Y_m
                self._blocks.append(_RowBlock(L_m, Y_m))
            logdet += 2.0 * float(np.sum(np.log(np.diagonal(L_m))))
        self.chol_inner = _cholesky(S)
        return logdet + 2.0 * float(np.sum(np.log(np.diagonal(self.chol_inner))))

    def _structured_solve(self, rhs: Array) -> Array:
        """Solve with the block-factored capacitance; rhs of shape (m, Q).

        Forward: rhs_l - sum_m C_m^T A_mm^{-1} z_m, where for a gate-space block
        C_m^T A_mm^{-1} z_m = E_l^m (I + M_m)^{-1} E_m^T z_m. Back: x_m = A_mm^{-1} (z_m - C_m x_l),
        for a gate-space block z_m - E_m (a + c) with a = E_l^m^T x_l and
        c = (I + M_m)^{-1} (E_m^T z_m - M_m a), so a + c = (I + M_m)^{-1} (E_m^T z_m + a)
        (:meth:`_factor_structured`).
        """
        bar = self.bar
        lab = bar.label_rows
        out = np.empty_like(rhs)
        rhs_l = rhs[:, lab].T.copy()
        forward: list[Array] = []
        for (rows, _), blk in zip(bar.groups, self._blocks, strict=True):
            z_m = rhs[:, rows].T
            if isinstance(blk, _GateBlock):
                u = blk.E_m.t_dot(z_m)
                rhs_l -= blk.El_m.dot(_cho_solve(blk.chol, u))
                forward.append(u)
            else:
                v = scipy.linalg.solve_triangular(blk.L_m, z_m, lower=True, check_finite=False)
                rhs_l -= blk.Y_m.T @ v
                forward.append(v)
        x_l, info = _potrs64(self.chol_inner, rhs_l, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"potrs failed (info={info})")
        out[:, lab] = x_l.T
        for (rows, _), blk, f in zip(bar.groups, self._blocks, forward, strict=True):
            if isinstance(blk, _GateBlock):
                # a + c = (I + M_m)^{-1} (E_m^T z_m + a): c = (I + M_m)^{-1} (u - M_m a).
                ac = _cho_solve(blk.chol, f + blk.El_m.t_dot(x_l))
                out[:, rows] = (rhs[:, rows].T - blk.E_m.dot(ac)).T
            else:
                x_m = scipy.linalg.solve_triangular(
                    blk.L_m, f - blk.Y_m @ x_l, lower=True, trans="T", check_finite=False
                )
                out[:, rows] = x_m.T
        return out

    # -------------------------------------------------------------- linear algebra
    def _bmul(self, Y: Array) -> Array:
        """blockdiag(B^{-1}) Y for Y of shape (m, K', 2, P, r)."""
        bar = self.bar
        m = Y.shape[0]
        if m <= 2:
            flat = Y.reshape(m, bar.J, bar.r, 1)
            return np.matmul(self.B_inv[None], flat).reshape(Y.shape)
        # Many right-hand sides (the Dikin recovery's rows, samples): one GEMM per block,
        # Y_j B_j^{-T} = (B_j^{-1} Y_j^T)^T, written in place through a transposed view.
        out = np.empty((m, bar.J, bar.r))
        np.matmul(
            Y.reshape(m, bar.J, bar.r).transpose(1, 0, 2),
            self.B_inv.transpose(0, 2, 1),
            out=out.transpose(1, 0, 2),
        )
        return out.reshape(Y.shape)

    def _apply_A(self, X: Array) -> Array:
        """A X: one number per cut and right-hand side, shape (m, Q)."""
        bar = self.bar
        m = X.shape[0]
        if bar.classes is not None:
            return self._apply_A_classes(X)
        w = (X[:, :, 0] - X[:, :, 1]).reshape(m, bar.G, bar.r)
        out = np.empty((m, bar.Q))
        # The C cuts of a label share its point: project each point once, (step, L, G) at a
        # time (deep version spaces have C = 1 + K' R cuts per label and many gates).
        L, C, G = bar.L, bar.C, bar.G
        cs3 = self.cs.reshape(L, C, G)
        step = max(1, _APPLY_CHUNK // max(1, bar.Q * G))
        for i in range(0, m, step):
            n = min(step, m - i)
            proj = np.matmul(bar.F[None], w[i : i + n].transpose(0, 2, 1))  # (n, L, G)
            out[i : i + n] = np.einsum("nlg,lcg->nlc", proj, cs3).reshape(n, bar.Q)
        return out

    def _apply_At(self, z: Array) -> Array:
        """A^T z for z of shape (m, Q); returns shape (m, K', 2, P, r)."""
        bar = self.bar
        m = z.shape[0]
        out = np.empty((m, bar.K, 2, bar.P, bar.r))
        if bar.classes is not None:
            w = self._apply_At_classes(z)
            out[:, :, 0] = w
            out[:, :, 1] = -w
            return out
        # (step, G, L) weights at a time (a label's C cuts summed first), one GEMM each.
        L, C, G = bar.L, bar.C, bar.G
        cs3 = self.cs.reshape(L, C, G)
        step = max(1, _APPLY_CHUNK // max(1, bar.Q * G))
        for i in range(0, m, step):
            n = min(step, m - i)
            zl = np.einsum("nlc,lcg->ngl", z[i : i + n].reshape(n, L, C), cs3)
            w = (zl.reshape(n * G, L) @ bar.F).reshape(n, bar.K, bar.P, bar.r)
            out[i : i + n, :, 0] = w
            out[i : i + n, :, 1] = -w
        return out

    def _apply_A_classes(self, X: Array) -> Array:
        """A X for multi-class cuts (:class:`ClassCuts`): the per-class values
        s_lk = sum_i D_li x_l^T w_ki once, then (s_{l y_l} - s_{l a_lj}) / t_lj per cut.
        Shape (m, Q); K - 1 times fewer flops than the generic product."""
        bar = self.bar
        cc = bar.classes
        assert cc is not None
        m, L, K, P = X.shape[0], bar.L, bar.K, bar.P
        w = (X[:, :, 0] - X[:, :, 1]).reshape(m, K * P, bar.r)
        s = np.empty((m, L, K))
        # (step, L, K P) products at a time, one GEMM each.
        step = max(1, _APPLY_CHUNK // max(1, L * K * P))
        for i in range(0, m, step):
            n = min(step, m - i)
            proj = (bar.F @ w[i : i + n].reshape(n * K * P, bar.r).T).reshape(L, n, K, P)
            s[i : i + n] = np.einsum("lnkp,lp->nlk", proj, cc.D)
        return cc.cut_values(s).reshape(m, bar.Q) * self.inv_t

    def _apply_At_classes(self, z: Array) -> Array:
        """The w part of A^T z for multi-class cuts, shape (m, K', P, r) (u gets +w, v gets
        -w): per point the class weights c_lk = sum_j z_lj sign_ljk / t_lj, then
        w_ki = sum_l c_lk D_li F_l."""
        bar = self.bar
        cc = bar.classes
        assert cc is not None
        m, L, K, P = z.shape[0], bar.L, bar.K, bar.P
        c = cc.class_weights((z * self.inv_t).reshape(m, L, K - 1))
        if m > 2:
            # One GEMM for every right-hand side: (m K P, L) @ (L, r).
            coef = c.transpose(0, 2, 1)[:, :, None, :] * cc.D.T[None, None, :, :]
            return (coef.reshape(m * K * P, L) @ bar.F).reshape(m, K, P, bar.r)
        out = np.empty((m, K, P, bar.r))
        for i in range(m):
            coef2 = (c[i][:, :, None] * cc.D[:, None, :]).reshape(L, K * P)
            out[i] = (coef2.T @ bar.F).reshape(K, P, bar.r)
        return out

    def _inner_solve(self, rhs: Array, approximate: bool) -> Array:
        """Solve with the inner (capacitance or gate-space) matrix; rhs of shape (m, n).

        Small inner systems keep an explicit inverse (a matrix-vector product beats two
        triangular solves there). Large ones use the Cholesky factor; ``approximate`` then uses
        a float32 copy, since those solves are memory-bound: it is only used where the result
        preconditions conjugate gradients, never for a direction used as is.
        """
        if self.path is HessianPath.STRUCTURED:
            return self._structured_solve(rhs)
        perm = self._perm
        if perm is not None:
            # The capacitance was factored with its cuts permuted (_class_capacitance).
            out = np.empty_like(rhs)
            out[:, perm] = self._inner_solve_factored(rhs[:, perm], approximate)
            return out
        return self._inner_solve_factored(rhs, approximate)

    def _inner_solve_factored(self, rhs: Array, approximate: bool) -> Array:
        if self._inner_inv is not None:
            # Symmetric products on the lower triangle that potri filled (no symmetrising copy):
            # mat-vecs for one or two right-hand sides, one matrix product for more.
            if rhs.shape[0] > 2:
                return np.asarray(_symm(1.0, self._inner_inv, rhs.T, lower=1).T)
            out = np.empty_like(rhs)
            for i in range(rhs.shape[0]):
                out[i] = _symv(1.0, self._inner_inv, rhs[i], lower=1)
            return out
        if self._tri32 is not None:
            # A float32 factor only preconditions, whatever the caller asks: H^{-1} b =
            # L^{-T} (L^{-1} b) by two triangular products, about four times faster than
            # the two triangular solves (memory-bound) and just as accurate.
            b32 = np.asfortranarray(rhs.T, dtype=np.float32)
            if rhs.shape[0] <= 2:
                cols = [
                    _trmv32(self._tri32, _trmv32(self._tri32, b32[:, i], lower=1), lower=1, trans=1)
                    for i in range(rhs.shape[0])
                ]
                return np.asarray(np.stack(cols), dtype=np.float64)
            y = _trmm32(1.0, self._tri32, b32, lower=1)
            return np.asarray(_trmm32(1.0, self._tri32, y, lower=1, trans_a=1).T, dtype=np.float64)
        if approximate:
            if self._chol32 is None:
                self._chol32 = np.asfortranarray(self.chol64, dtype=np.float32)
            x32, info = _potrs32(self._chol32, rhs.T.astype(np.float32), lower=1)
            if info == 0:
                return np.asarray(x32.T, dtype=np.float64)
        x, info = _potrs64(self.chol64, rhs.T, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"potrs failed (info={info})")
        return np.asarray(x.T)

    def _solve0(self, Y: Array, approximate: bool = False) -> Array:
        """(blockdiag(B) + A^T A)^{-1} Y by Woodbury, for Y of shape (m, K', 2, P, r)."""
        bar = self.bar
        m = Y.shape[0]
        X1 = self._bmul(Y)
        if self.path in (HessianPath.LABEL_SPACE, HessianPath.STRUCTURED):
            z = self._apply_A(X1)  # (m, Q)
            w = self._inner_solve(z, approximate)
            back = self._apply_At(w)
        else:
            yw = (X1[:, :, 0] - X1[:, :, 1]).reshape(m, bar.G, bar.r, 1)
            dv = np.matmul(self.D_inv[None], yw).reshape(m, bar.G * bar.r)
            s = self._inner_solve(dv, approximate)
            ds = np.matmul(self.D_inv[None], s.reshape(m, bar.G, bar.r, 1)).reshape(m, -1)
            mw = (dv - ds).reshape(m, bar.K, bar.P, bar.r)
            back = np.stack([mw, -mw], axis=2)
        return X1 - self._bmul(back)

    def solve(self, Y: Array, approximate: bool = False) -> Array:
        """H^{-1} Y for Y of shape (m, K', 2, P, r) (or one point of shape (K', 2, P, r)).

        ``approximate=True`` is for preconditioning only (see :meth:`_inner_solve`).
        """
        single = Y.ndim == 4
        Ym = Y[None] if single else Y
        X0 = self._solve0(Ym, approximate)
        # Sherman-Morrison: H^{-1} y = H0^{-1} y - z_b (beta^T H0^{-1} y) / (1 + beta^T z_b).
        coeff = (X0.reshape(X0.shape[0], -1) @ self.beta.ravel()) / self.denom
        X = X0 - coeff.reshape(-1, 1, 1, 1, 1) * self.z_beta[None]
        return X[0] if single else X

    def logdet(self) -> float:
        """log det H in the basis coordinates."""
        logdet_B = 2.0 * float(np.sum(np.log(np.diagonal(self.chol_B, axis1=1, axis2=2))))
        return logdet_B + self._logdet_rest

    @property
    def chol_B(self) -> Array:
        """Batched lower Cholesky factors of the B_j, shape (J, r, r) (computed on demand)."""
        if self._chol_B is None:
            self._chol_B = _batched_cholesky(self._B)
        return self._chol_B

    def sample(self, rng: np.random.Generator, n: int) -> Array:
        """Draw n vectors from N(0, H^{-1}), shape (n, K', 2, P, r).

        zeta = B^{1/2} z1 + A^T z2 + beta z3 has covariance B + A^T A + beta beta^T = H,
        so H^{-1} zeta ~ N(0, H^{-1}).
        """
        bar = self.bar
        z1 = rng.standard_normal((n, bar.J, bar.r, 1))
        part1 = np.matmul(self.chol_B[None], z1).reshape(n, bar.K, 2, bar.P, bar.r)
        part2 = self._apply_At(rng.standard_normal((n, bar.Q)))
        part3 = rng.standard_normal(n).reshape(n, 1, 1, 1, 1) * self.beta[None]
        return self.solve(part1 + part2 + part3)


def _block_inverse(B: Array) -> Array:
    """Inverses of the blocks B_j, shape (J, r, r), Jacobi-scaled first: the weights 1/p^2
    span many orders of magnitude near the boundary, and LU on the scaled matrix keeps the
    accuracy Cholesky would have."""
    r = B.shape[1]
    idx = np.arange(r)
    scale = 1.0 / np.sqrt(B[:, idx, idx])  # (J, r)
    outer = scale[:, :, None] * scale[:, None, :]
    inv = np.asarray(np.linalg.inv(B * outer), dtype=np.float64)
    inv *= outer
    return inv


def _cholesky_inverse(B: Array) -> Array:
    """Inverses of the symmetric positive definite blocks B_j by LAPACK potrf and potri, shape
    (J, r, r): a third of the time of batched LU with Jacobi scaling (:func:`_block_inverse`),
    which it falls back to when a block is not positive definite in floating point, and which
    it uses for blocks smaller than 12 x 12 (there one batched call beats a loop of LAPACK
    calls: 0.8 ms against 1.6 ms at J = 640, r = 8). For preconditioners only (no scaling)."""
    J, r = B.shape[0], B.shape[1]
    if r < 12:
        return _block_inverse(B)
    out = np.empty_like(B)
    for j in range(J):
        chol, info = _potrf64(B[j], lower=1, clean=0)
        if info == 0:
            out[j], info = _potri64(chol, lower=1)
        if info != 0:
            return _block_inverse(B)
    iu, ju = np.triu_indices(r, 1)
    out[:, iu, ju] = out[:, ju, iu]  # potri fills the lower triangle
    return out


class BlockPreconditioner:
    """The barrier Hessian without its label cuts, M = blockdiag(B_j) + beta beta^T (eq. BJ).

    A preconditioner for conjugate gradients on H = M + A^T A: soft cuts keep slacks of at
    least their offset, so at every point of a soft version space A^T A adds little to M
    (its trace against H, the cuts' summed leverage, was 39 of 16,640 dimensions at the
    4-class centre of ``make bench-center``) and CG reaches 1e-9 in 7 to 15 iterations.
    Building it costs the pattern blocks and J small inverses: no capacitance or gate-space
    matrix is formed, so nothing grows with Q = L (K - 1) but the products with A.
    """

    def __init__(self, bar: Barrier, theta: Array, sl: Slacks) -> None:
        B = bar.pattern_blocks((1.0 / sl.p**2).reshape(bar.L, bar.J), 2.0 / sl.sb)
        self.B_inv = _cholesky_inverse(B)
        # Ball: rank-one term beta beta^T by Sherman-Morrison.
        self.beta = (2.0 / sl.sb) * theta
        self.z_beta = self._bmul(self.beta)
        self.denom = 1.0 + float(np.sum(self.beta * self.z_beta))

    def _bmul(self, y: Array) -> Array:
        J, r = self.B_inv.shape[0], self.B_inv.shape[1]
        return np.matmul(self.B_inv, y.reshape(J, r, 1)).reshape(y.shape)

    def solve(self, y: Array, approximate: bool = True) -> Array:
        """M^{-1} y for one point y of shape (K', 2, P, r) (``approximate`` is ignored: a
        preconditioner only)."""
        x = self._bmul(y)
        return x - self.z_beta * (float(np.sum(self.beta * x)) / self.denom)


@dataclass
class _RowBlock:
    """A D3 group of the STRUCTURED path factored in row space: A_mm = L_m L_m^T and
    Y_m = L_m^{-1} C_m (:meth:`HessianFactor._factor_structured`)."""

    L_m: Array
    Y_m: Array


@dataclass
class _ScaledRows:
    """E = [diag(c_:g) F R_g]_g, shape (n, w r), kept as its factors: F (n, r), c (n, w),
    R (w, r, r). Both products cost 2 n r w per right-hand side, like the dense matrix, but
    read n (r + w) numbers instead of n w r."""

    F: Array
    c: Array
    R: Array

    def dot(self, y: Array) -> Array:
        """E y for y of shape (w r, m); returns shape (n, m)."""
        w, r, _ = self.R.shape
        m = y.shape[1]
        V = np.matmul(self.R, y.reshape(w, r, m))  # (w, r, m): R_g y_g
        U = self.F @ V.transpose(1, 0, 2).reshape(r, w * m)  # (n, w m)
        return np.einsum("ng,ngm->nm", self.c, U.reshape(-1, w, m))

    def t_dot(self, z: Array) -> Array:
        """E^T z for z of shape (n, m); returns shape (w r, m)."""
        w, r, _ = self.R.shape
        n, m = z.shape
        W = self.c[:, :, None] * z[:, None, :]  # (n, w, m)
        T = (self.F.T @ W.reshape(n, w * m)).reshape(r, w, m).transpose(1, 0, 2)
        return np.matmul(self.R.transpose(0, 2, 1), T).reshape(w * r, m)


@dataclass
class _GateBlock:
    """A D3 group factored in gate space: its rows E_m and the label rows' columns E_l^m of
    its gates (as factors), and the lower Cholesky factor of I + M_m = I + E_m^T E_m
    (:meth:`HessianFactor._factor_structured`)."""

    E_m: _ScaledRows
    El_m: _ScaledRows
    chol: Array


def _cho_solve(chol: Array, b: Array) -> Array:
    """(L L^T)^{-1} b for a lower Cholesky factor L (Fortran order) and b of shape (n, m)."""
    x, info = _potrs64(chol, b, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potrs failed (info={info})")
    return np.asarray(x)


def _cholesky(M: Array) -> Array:
    """Lower Cholesky factor of a matrix that is PD in exact arithmetic.

    Rows with tiny slacks make the barrier Hessian's pieces so ill-conditioned that roundoff
    can leave them slightly indefinite; retry with a symmetrised matrix and a growing diagonal
    jitter (1e-12 to 1e-6 of the mean diagonal). The factor is then a preconditioner: every
    Newton direction is refined against the exact Hessian-vector product.
    """
    try:
        return scipy.linalg.cholesky(M, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        sym = 0.5 * (M + M.T)
        mean_diag = float(np.trace(sym)) / M.shape[0]
        for jitter in _JITTERS:
            try:
                return scipy.linalg.cholesky(
                    sym + jitter * mean_diag * np.eye(M.shape[0]), lower=True, check_finite=False
                )
            except np.linalg.LinAlgError:
                continue
        raise


#: Relative diagonal jitters tried, in turn, when a Cholesky factorization fails.
_JITTERS = (1e-12, 1e-10, 1e-8, 1e-6)


def _cho_inverse(chol: Array) -> Array:
    """Inverse from a lower Cholesky factor; only its lower triangle is valid (use _symv)."""
    inv, info = lapack.dpotri(chol, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed (info={info})")
    return np.asarray(inv)


def _batched_cholesky(M: Array) -> Array:
    """Lower Cholesky factors of a stack of PD blocks, shape (n, r, r); see :func:`_cholesky`
    for the retries."""
    try:
        return np.asarray(np.linalg.cholesky(M), dtype=np.float64)
    except np.linalg.LinAlgError:
        r = M.shape[-1]
        sym = 0.5 * (M + M.transpose(0, 2, 1))
        scale = np.trace(sym, axis1=-2, axis2=-1) / r
        for jitter in _JITTERS:
            try:
                return np.asarray(
                    np.linalg.cholesky(sym + jitter * scale[:, None, None] * np.eye(r)[None]),
                    dtype=np.float64,
                )
            except np.linalg.LinAlgError:
                continue
        raise


def as_float_array(x: Any) -> Array:
    return np.asarray(x, dtype=np.float64)
