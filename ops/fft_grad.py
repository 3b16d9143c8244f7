"""Gradient rules for the discrete Fourier transforms (TF's fft_ops.py).

With F the unnormalised DFT over the innermost `rank` axes (n points in
all), FFT = F and IFFT = F^-1 = F^H / n, so their adjoints are n IFFT and
FFT / n. The real transforms RFFT/IRFFT keep only half of the last axis;
their rules undo that (RFFT: zero-fill and take the real part; IRFFT: count
the mirrored half twice). The real transforms crop or zero-pad their input
to `fft_length`; the rules route the gradient back through that as well.
"""

import numpy as np
import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.emit import raw as _RAW


def _points(t, rank):
  """Number of points in one transform: product of t's `rank` inner dims."""
  static = t.shape[-rank:]
  if static.is_fully_defined():
    return int(np.prod(static.as_list()))
  return tf.reduce_prod(tf.shape(t)[-rank:])


def _times(t, scale):
  """t * scale for a Python number `scale` or a real scalar tensor."""
  if not isinstance(scale, tf.Tensor):
    return t * tf.constant(scale, t.dtype)
  scale = tf.cast(scale, t.dtype.real_dtype)
  return t * (tf.cast(scale, t.dtype) if t.dtype.is_complex else scale)


def _reciprocal(n):
  """1 / n for a Python int or an int32 scalar tensor."""
  if isinstance(n, tf.Tensor):
    return tf.math.reciprocal(tf.cast(n, tf.float64))
  return 1.0 / n


def _inner_dims(t, rank):
  """Static sizes of t's `rank` innermost axes (None where unknown)."""
  if t.shape.rank is None:
    return [None] * rank
  return t.shape.as_list()[-rank:]


def _fit_inner(t, dims):
  """Crops or zero-pads t's innermost axes to the sizes `dims`; axes whose
  size or target is unknown are left alone."""
  have = _inner_dims(t, len(dims))
  if t.shape.rank is None or have == list(dims):
    return t
  known = [h is not None and d is not None for h, d in zip(have, dims)]
  crop = [d if k and h > d else -1 for h, d, k in zip(have, dims, known)]
  extra = [d - h if k and d > h else 0 for h, d, k in zip(have, dims, known)]
  lead = t.shape.rank - len(dims)
  if any(c != -1 for c in crop):
    t = tf.slice(t, [0] * t.shape.rank, [-1] * lead + crop)
  if any(extra):
    t = tf.pad(t, [[0, 0]] * lead + [[0, e] for e in extra])
  return t


# ----- Complex transforms -----

def _def_complex_pair(rank, forward, inverse):
  """Registers the rules of the rank-`rank` FFT/IFFT pair."""
  suffix = f"{rank}D" if rank > 1 else ""
  fwd_type, inv_type = f"FFT{suffix}", f"IFFT{suffix}"

  @RegisterGradient(fwd_type)
  def _fft_grad(_, grad):
    """F^H g = n IFFT(g)."""
    return _times(inverse(input=grad), _points(grad, rank))

  @RegisterGradient(inv_type)
  def _ifft_grad(_, grad):
    """(F^H / n)^H g = FFT(g) / n."""
    return _times(forward(input=grad), _reciprocal(_points(grad, rank)))


_def_complex_pair(1, _RAW.FFT, _RAW.IFFT)
_def_complex_pair(2, _RAW.FFT2D, _RAW.IFFT2D)
_def_complex_pair(3, _RAW.FFT3D, _RAW.IFFT3D)


# ----- Real transforms -----

def _half_spectrum_weights(lengths, dtype):
  """[1, 2, ..., 2, (1 when the last length is even)] / prod(lengths)."""
  weights = np.full(lengths[-1] // 2 + 1, 2.0)
  weights[0] = 1.0
  if lengths[-1] % 2 == 0:
    weights[-1] = 1.0
  return tf.constant(weights / np.prod(lengths), dtype)


def _def_real_pair(rank, rfft, irfft, complex_inverse):
  """Registers the rules of the rank-`rank` RFFT/IRFFT pair."""
  suffix = f"{rank}D" if rank > 1 else ""

  @RegisterGradient(f"RFFT{suffix}")
  def _rfft_grad(op, grad):
    """x -> half of F x: dx = n Re(IFFT(g zero-filled to fft_length))."""
    x, lengths = op.inputs
    static = tf.get_static_value(lengths)
    if static is None:
      return _rfft_grad_dynamic(x, lengths, grad), None
    static = [int(d) for d in static]
    full = _fit_inner(grad, static)
    real = tf.math.real(complex_inverse(input=full))
    return _fit_inner(_times(real, int(np.prod(static))),
                      _inner_dims(x, rank)), None

  def _rfft_grad_dynamic(x, lengths, grad):
    """As _rfft_grad for a fft_length known only at run time."""
    missing = lengths[-1] - tf.shape(grad)[-1]
    pad = tf.concat([tf.zeros([tf.rank(grad) - 1, 2], tf.int32),
                     [[0, missing]]], 0)
    real = tf.math.real(complex_inverse(input=tf.pad(grad, pad)))
    return _times(real, tf.reduce_prod(lengths))

  @RegisterGradient(f"IRFFT{suffix}")
  def _irfft_grad(op, grad):
    """Half spectrum -> real signal: dx = RFFT(g) w / n, w counting each
    mirrored frequency twice."""
    x, lengths = op.inputs
    static = tf.get_static_value(lengths)
    if static is None:
      raise NotImplementedError(f"{op.type} gradient needs a constant "
                                "fft_length")
    weights = _half_spectrum_weights([int(d) for d in static], x.dtype)
    spectrum = rfft(input=grad, fft_length=lengths, Tcomplex=x.dtype)
    return _fit_inner(spectrum * weights, _inner_dims(x, rank)), None


_def_real_pair(1, _RAW.RFFT, _RAW.IRFFT, _RAW.IFFT)
_def_real_pair(2, _RAW.RFFT2D, _RAW.IRFFT2D, _RAW.IFFT2D)
