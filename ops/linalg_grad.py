"""Gradient rules for dense linear-algebra ops (TF's linalg_grad.py family).

Notation: A is the op's matrix input, G the incoming gradient, X^H the
adjoint (conjugate transpose). Shapes are [..., M, N] with any batch prefix.
Eigen/singular-vector rules are defined for distinct eigen/singular values
only; like TF, they damp 1/(a - b) to (a - b) / ((a - b)^2 + 1e-20) so that
degenerate spectra give finite (if meaningless) values instead of NaN.
"""

import numpy as np
import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers

_DAMPING = 1e-20


def _adj(x):
  """x^H over the two innermost axes (a plain transpose for real x)."""
  return tf.linalg.adjoint(x)


def _mm(a, b, adjoint_a=False, adjoint_b=False):
  return tf.linalg.matmul(a, b, adjoint_a=adjoint_a, adjoint_b=adjoint_b)


def _eye(n, dtype):
  """The n x n identity as a constant (broadcasts against batches)."""
  return tf.constant(np.eye(n), dtype=dtype)


def _as_matrices(t):
  """t of shape [...] reshaped to [..., 1, 1] (to scale a batch of matrices)."""
  static = _helpers.static_shape(t)
  if static is not None:
    return tf.reshape(t, static + (1, 1))
  return tf.reshape(t, tf.concat([tf.shape(t), [1, 1]], 0))


def _batch_plus(batch, inner):
  """A shape: `batch` (a list, or an int32 tensor) followed by `inner`."""
  if isinstance(batch, list):
    return batch + inner
  return tf.concat([batch, inner], 0)


def _damped_reciprocal(x):
  """x / (x^2 + eps): 1/x away from 0, and 0 at x = 0."""
  return x / (x * x + _DAMPING)


def _gap_reciprocals(e):
  """F[..., i, j] = 1 / (e_j - e_i) off the diagonal, 0 on it."""
  gaps = tf.expand_dims(e, -2) - tf.expand_dims(e, -1)
  return tf.linalg.set_diag(_damped_reciprocal(gaps), tf.zeros_like(e))


def _scale_cols(x, d):
  """x @ diag(d)."""
  return x * tf.expand_dims(d, -2)


def _scale_rows(d, x):
  """diag(d) @ x."""
  return tf.expand_dims(d, -1) * x


def _half_diag_tril(x):
  """Lower triangle of x with its diagonal halved."""
  low = tf.linalg.band_part(x, -1, 0)
  return tf.linalg.set_diag(low, 0.5 * tf.linalg.diag_part(low))


def _batch_unbroadcast(ga, a, gb, b):
  """Sums ga, gb over the batch axes that a, b were broadcast along."""
  sa, sb = _helpers.static_shape(a), _helpers.static_shape(b)
  if sa is not None and sb is not None and sa[:-2] == sb[:-2]:
    return ga, gb
  return _helpers.unbroadcast_pair(ga, a, gb, b)


def _solve_vjp(op, grad, solve):
  """Shared by the X = op(A)^-1 B solvers: (dA, dB) before band masking.

  dB = op(A)^-H G and dA = -dB X^H (-X dB^H when op is the adjoint)."""
  adjoint = op.get_attr("adjoint")
  x = op.outputs[0]
  gb = solve(grad, not adjoint)
  ga = -_mm(x, gb, adjoint_b=True) if adjoint else -_mm(gb, x, adjoint_b=True)
  return ga, gb


# ----- Inverse, determinants -----

@RegisterGradient("MatrixInverse")
def _matrix_inverse_grad(op, grad):
  """Y = A^-1: dA = -Y^H G Y^H (for Y = A^-H: dA = -Y G^H Y)."""
  y = op.outputs[0]
  if op.get_attr("adjoint"):
    return -_mm(y, _mm(grad, y, adjoint_a=True))
  return -_mm(y, _mm(grad, y, adjoint_b=True), adjoint_a=True)


@RegisterGradient("MatrixDeterminant")
def _matrix_determinant_grad(op, grad):
  """d = det(A): dA = G d A^-H (d itself unconjugated, as in TF)."""
  a_inv_h = tf.linalg.inv(op.inputs[0], adjoint=True)
  return _as_matrices(grad * op.outputs[0]) * a_inv_h


@RegisterGradient("LogMatrixDeterminant")
def _log_matrix_determinant_grad(op, _, grad_log_abs):
  """log|det A|: dA = G A^-H; the sign output has no gradient."""
  a_inv_h = tf.linalg.inv(op.inputs[0], adjoint=True)
  return _as_matrices(grad_log_abs) * a_inv_h


# ----- Factorizations -----

@RegisterGradient("Cholesky")
def _cholesky_grad(op, grad):
  """A = L L^H: dA = sym(L^-H Phi(L^H G) L^-1), Phi = tril, diagonal halved."""
  low = op.outputs[0]
  n = low.shape[-1]
  eye = _eye(n, low.dtype) if n is not None else tf.eye(
      tf.shape(low)[-1], batch_shape=tf.shape(low)[:-2], dtype=low.dtype)
  low_inv = tf.linalg.triangular_solve(low, eye, lower=True)
  middle = _half_diag_tril(_mm(low, grad, adjoint_a=True))
  ga = _mm(_mm(low_inv, middle, adjoint_a=True), low_inv)
  return 0.5 * (ga + _adj(ga))


def _times_inv_r_h(x, r):
  """x R^-H for upper-triangular R, by one triangular solve."""
  return _adj(tf.linalg.triangular_solve(r, _adj(x), lower=False))


def _qr_square_or_tall(q, r, dq, dr):
  """A = QR with Q [M, N], R [N, N], M >= N:
  dA = Q dR + (Q tril(skew(Q^H dQ) + skew(R dR^H)) + dQ - Q Q^H dQ) R^-H."""
  qdq = _mm(q, dq, adjoint_a=True)
  rdr = _mm(r, dr, adjoint_b=True)
  low = tf.linalg.band_part(qdq - _adj(qdq) + rdr - _adj(rdr), -1, 0)
  rest = _mm(q, low - qdq) + dq
  if q.dtype.is_complex:
    d = tf.linalg.diag_part(rdr - _adj(qdq))
    imag_d = tf.complex(tf.zeros_like(tf.math.real(d)), tf.math.imag(d))
    rest += _mm(q, tf.linalg.diag(-imag_d))
  return _mm(q, dr) + _times_inv_r_h(rest, r)


@RegisterGradient("Qr")
def _qr_grad(op, dq, dr):
  """QR gradient; a wide A = [X, Y] reduces to the square case on X."""
  q, r = op.outputs
  m, n = q.shape[-2], r.shape[-1]
  if m is None or n is None or r.shape[-2] is None:
    raise NotImplementedError(f"Qr gradient needs static matrix dimensions, "
                              f"got Q {q.shape} and R {r.shape}")
  if r.shape[-2] > n and q.shape[-1] == m:
    raise NotImplementedError(f"Qr gradient for full_matrices with more rows "
                              f"than columns (R {r.shape}) is not defined")
  if m >= n:
    return _qr_square_or_tall(q, r, dq, dr)
  y = op.inputs[0][..., :, m:]
  du, dv = dr[..., :, :m], dr[..., :, m:]
  dx = _qr_square_or_tall(q, r[..., :, :m], dq + _mm(y, dv, adjoint_b=True),
                          du)
  return tf.concat([dx, _mm(q, dv)], axis=-1)


# ----- Linear solvers -----

@RegisterGradient("MatrixSolve")
def _matrix_solve_grad(op, grad):
  """X = op(A)^-1 B: dB = op(A)^-H G, dA = -dB X^H (or -X dB^H)."""
  a = op.inputs[0]
  return _solve_vjp(op, grad,
                    lambda g, adj: tf.linalg.solve(a, g, adjoint=adj))


@RegisterGradient("MatrixTriangularSolve")
def _matrix_triangular_solve_grad(op, grad):
  """As MatrixSolve, with dA masked to A's triangle; batches unbroadcast."""
  a, b = op.inputs
  lower = op.get_attr("lower")
  ga, gb = _solve_vjp(op, grad, lambda g, adj: tf.linalg.triangular_solve(
      a, g, lower=lower, adjoint=adj))
  ga = tf.linalg.band_part(ga, -1, 0) if lower else tf.linalg.band_part(
      ga, 0, -1)
  return _batch_unbroadcast(ga, a, gb, b)


@RegisterGradient("BandedTriangularSolve")
def _banded_triangular_solve_grad(op, grad):
  """As MatrixTriangularSolve, with dA packed back into A's band storage."""
  a, b = op.inputs
  lower = op.get_attr("lower")
  solve = tf.linalg.banded_triangular_solve
  ga, gb = _solve_vjp(op, grad,
                      lambda g, adj: solve(a, g, lower=lower, adjoint=adj))
  bands = a.shape[-2] if a.shape[-2] is not None else tf.shape(a)[-2]
  k = (1 - bands, 0) if lower else (0, bands - 1)
  ga = tf.linalg.diag_part(ga, k=k, align="LEFT_RIGHT")
  return _batch_unbroadcast(ga, a, gb, b)


def _solve_ls_tall(a, b, x, l2, grad):
  """X = (A^H A + l2 I)^-1 A^H B: with Z = (A^H A + l2 I)^-1 G,
  dA = B Z^H - A (X Z^H + (X Z^H)^T), dB = A Z."""
  gram = _mm(a, a, adjoint_a=True) + l2 * _eye(a.shape[-1], a.dtype)
  z = tf.linalg.cholesky_solve(tf.linalg.cholesky(gram), grad)
  xz = _mm(x, z, adjoint_b=True)
  ga = _mm(b, z, adjoint_b=True) - _mm(a, xz + tf.linalg.matrix_transpose(xz))
  return ga, _mm(a, z)


def _solve_ls_wide(a, b, l2, grad):
  """X = A^H (A A^H + l2 I)^-1 B: with dB = (A A^H + l2 I)^-1 A G and
  T = (A A^H + l2 I)^-1 B, dA = T (G - A^H dB)^H - dB T^H A."""
  gram = _mm(a, a, adjoint_b=True) + l2 * _eye(a.shape[-2], a.dtype)
  chol = tf.linalg.cholesky(gram)
  gb = tf.linalg.cholesky_solve(chol, _mm(a, grad))
  t = tf.linalg.cholesky_solve(chol, b)
  ga = (_mm(t, grad - _mm(a, gb, adjoint_a=True), adjoint_b=True)
        - _mm(gb, _mm(t, a, adjoint_a=True)))
  return ga, gb


@RegisterGradient("MatrixSolveLs")
def _matrix_solve_ls_grad(op, grad):
  """Regularised least squares (fast path only); no gradient for l2."""
  if not op.get_attr("fast"):
    raise ValueError("MatrixSolveLs has a gradient only for fast=True")
  a, b, l2 = op.inputs
  l2 = tf.cast(l2, a.dtype)
  m, n = a.shape[-2], a.shape[-1]
  if m is not None and n is not None:
    if m >= n:
      return (*_solve_ls_tall(a, b, op.outputs[0], l2, grad), None)
    return (*_solve_ls_wide(a, b, l2, grad), None)
  dims = tf.shape(a)[-2:]
  ga, gb = tf.cond(dims[0] >= dims[1],
                   lambda: _solve_ls_tall(a, b, op.outputs[0], l2, grad),
                   lambda: _solve_ls_wide(a, b, l2, grad))
  return ga, gb, None


# ----- Matrix functions -----

@RegisterGradient("MatrixSquareRoot")
def _matrix_square_root_grad(op, grad):
  """R = sqrtm(A), A = R R: dA solves R^T dA + dA R^T = G (Kronecker form)."""
  r = op.outputs[0]
  n = r.shape[-1]
  if n is None or r.shape.rank is None:
    raise NotImplementedError("MatrixSquareRoot gradient needs a static "
                              f"matrix size, got {r.shape}")
  static = _helpers.static_shape(r)
  batch = list(static[:-2]) if static is not None else tf.shape(r)[:-2]
  eye = _eye(n, r.dtype)
  # K[(i, k), (j, l)] = I_ij R_lk + R_ij I_kl, so K vec(Y) = vec(Y R + R Y)
  r_t = tf.linalg.matrix_transpose(r)
  kron = (eye[:, None, :, None] * r_t[..., None, :, None, :]
          + r[..., :, None, :, None] * eye[None, :, None, :])
  kron = tf.reshape(kron, _batch_plus(batch, [n * n, n * n]))
  rhs = tf.reshape(tf.linalg.matrix_transpose(grad),
                   _batch_plus(batch, [n * n, 1]))
  vec = tf.linalg.solve(kron, rhs)
  return tf.linalg.matrix_transpose(tf.reshape(vec, _helpers.shape_of(r)))


# ----- Spectral decompositions -----

@RegisterGradient("SelfAdjointEigV2")
def _self_adjoint_eig_v2_grad(op, grad_e, grad_v):
  """A = V diag(e) V^H: dA = V (diag(ge) + F o V^H gV) V^H, folded onto the
  lower triangle (the kernel reads only that)."""
  with _helpers.after_grads(grad_e, grad_v):
    return _self_adjoint_eig_v2_grad_of(op, grad_e, grad_v)


def _self_adjoint_eig_v2_grad_of(op, grad_e, grad_v):
  e = op.outputs[0]
  if op.get_attr("compute_v"):
    v = op.outputs[1]
    inner = (tf.linalg.diag(grad_e)
             + _gap_reciprocals(e) * _mm(v, grad_v, adjoint_a=True))
  else:
    _, v = tf.linalg.eigh(op.inputs[0])
    inner = tf.linalg.diag(grad_e)
  ga = _mm(v, _mm(inner, v, adjoint_b=True))
  return _half_diag_tril(ga + _adj(ga))


@RegisterGradient("Eig")
def _eig_grad(op, grad_e, grad_v):
  """A V = V diag(e), unit-norm columns: dA = V^-H (diag(ge)
  + conj(F) o (V^H gV - V^H V diag(Re diag(V^H gV)))) V^H."""
  with _helpers.after_grads(grad_e, grad_v):
    return _eig_grad_of(op, grad_e, grad_v)


def _eig_grad_of(op, grad_e, grad_v):
  e = op.outputs[0]
  if op.get_attr("compute_v"):
    v = op.outputs[1]
    vgv = _mm(v, grad_v, adjoint_a=True)
    re_diag = tf.cast(tf.math.real(tf.linalg.diag_part(vgv)), vgv.dtype)
    inner = tf.linalg.diag(grad_e) + tf.math.conj(_gap_reciprocals(e)) * (
        vgv - _scale_cols(_mm(v, v, adjoint_a=True), re_diag))
  else:
    _, v = tf.linalg.eig(op.inputs[0])
    inner = tf.linalg.diag(grad_e)
  v_h = _adj(v)
  ga = tf.linalg.solve(v_h, _mm(inner, v_h))
  return tf.cast(ga, op.inputs[0].dtype)


def _svd_wide(s, u, v, gs, gu, gv, full_matrices):
  """A = U diag(s) V^H for M <= N (V1 = V[:, :M]): the gradient of A."""
  m = u.shape[-1]
  v1, gv1 = v[..., :, :m], gv[..., :, :m]
  f = _gap_reciprocals(tf.square(s))
  fu = f * _mm(u, gu, adjoint_a=True)
  vgv = _mm(v1, gv1, adjoint_a=True)
  fv = f * vgv
  core = (tf.linalg.diag(gs) + _scale_cols(fu + _adj(fu), s)
          + _scale_rows(s, fv + _adj(fv)))
  if s.dtype.is_complex:
    im = tf.linalg.diag(tf.linalg.diag_part(vgv))
    core += 0.5 * _scale_rows(_damped_reciprocal(s), _adj(im) - im)
  ga = _mm(u, _mm(core, v1, adjoint_b=True))
  if m == v.shape[-2]:
    return ga
  gv1_h = _adj(gv1)
  off = gv1_h - _mm(_mm(gv1_h, v1), v1, adjoint_b=True)
  if full_matrices:
    off -= _mm(_mm(v1, gv[..., :, m:], adjoint_a=True), v[..., :, m:],
               adjoint_b=True)
  return ga + _mm(u, _scale_rows(_damped_reciprocal(s), off))


@RegisterGradient("Svd")
def _svd_grad(op, grad_s, grad_u, grad_v):
  """SVD gradient (distinct nonzero singular values); a tall A is handled
  as the adjoint of the wide A^H = V diag(s) U^H."""
  with _helpers.after_grads(grad_s, grad_u, grad_v):
    return _svd_grad_of(op, grad_s, grad_u, grad_v)


def _svd_grad_of(op, grad_s, grad_u, grad_v):
  a = op.inputs[0]
  gs = tf.cast(grad_s, a.dtype)
  if not op.get_attr("compute_uv"):
    _, u, v = tf.linalg.svd(a, compute_uv=True)
    return _mm(u, _scale_rows(gs, _adj(v)))
  m, n = a.shape[-2], a.shape[-1]
  if m is None or n is None:
    raise NotImplementedError(f"Svd gradient needs static matrix dimensions, "
                              f"got {a.shape}")
  full = op.get_attr("full_matrices")
  if full and abs(m - n) > 1:
    raise NotImplementedError(f"Svd gradient with full_matrices needs "
                              f"|M - N| <= 1, got {a.shape}")
  s, u, v = op.outputs
  s = tf.cast(s, a.dtype)
  if m > n:
    return _adj(_svd_wide(s, v, u, gs, grad_v, grad_u, full))
  return _svd_wide(s, u, v, gs, grad_u, grad_v, full)


# ----- Tridiagonal -----

def _shift_rows(x, up):
  """Moves x's rows (axis -2) one place up (or down), filling with zeros."""
  rank = x.shape.rank
  pad = [[0, 0]] * (rank - 2) + [[0, 1] if up else [1, 0], [0, 0]]
  body = x[..., 1:, :] if up else x[..., :-1, :]
  return tf.pad(body, pad)


@RegisterGradient("TridiagonalMatMul")
def _tridiagonal_mat_mul_grad(op, grad):
  """Y = T X with T's diagonals given as rows: each diagonal's gradient is
  sum_k G o shifted conj(X); dX = T^H G."""
  sup, main, sub = (_adj(d) for d in op.inputs[:3])  # [..., M, 1] columns
  x = _helpers.conj(op.inputs[3])
  rows = lambda t: tf.reduce_sum(t, axis=-1)[..., None, :]
  return (rows(_shift_rows(x, up=True) * grad), rows(x * grad),
          rows(_shift_rows(x, up=False) * grad),
          _shift_rows(sup * grad, up=False) + main * grad
          + _shift_rows(sub * grad, up=True))


def _transposed_diagonals(diags):
  """Compact [super; main; sub] diagonals of T^T from those of T."""
  zero = tf.zeros_like(diags[..., 0, :1])
  sup = tf.concat([diags[..., 2, 1:], zero], axis=-1)
  sub = tf.concat([zero, diags[..., 0, :-1]], axis=-1)
  return tf.stack([sup, diags[..., 1, :], sub], axis=-2)


def _three_diagonals_of_product(a, b):
  """Compact [super; main; sub] diagonals of A B^T, without forming it."""
  main = tf.reduce_sum(a * b, axis=-1)
  sup = tf.reduce_sum(a * _shift_rows(b, up=True), axis=-1)
  sub = tf.reduce_sum(a * _shift_rows(b, up=False), axis=-1)
  return tf.stack([sup, main, sub], axis=-2)


@RegisterGradient("TridiagonalSolve")
def _tridiagonal_solve_grad(op, grad):
  """X = T^-1 B: dB = T^-T G, dT = -tridiagonal part of dB X^T."""
  gb = raw.TridiagonalSolve(
      diagonals=_transposed_diagonals(op.inputs[0]), rhs=grad,
      partial_pivoting=op.get_attr("partial_pivoting"),
      perturb_singular=op.get_attr("perturb_singular"))
  return -_three_diagonals_of_product(gb, op.outputs[0]), gb
