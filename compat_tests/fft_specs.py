"""Specs for ops/fft_grad.py rules.

The transforms are complex-valued, and the finite-difference check runs in
float64 only. So each op gets a complex-dtype spec compared with stock TF
alone, and a spec whose builder takes real and imaginary parts as float64
inputs and returns real and imaginary parts of the result (through Complex,
Real and Imag), which gets both checks.

NUMERIC_ONLY_SPECS: RFFT/IRFFT whose input is cropped or zero-padded to
fft_length. Stock tf.gradients fails to build a gradient there (shape
mismatch, ValueError; listed in TF_FAILS and kept honest by a test).
"""

import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops
signal = tf.signal

_COMPLEX = ("complex128", "complex64")
_NOTE = ("complex input: the numeric check is done by the re_im spec, "
         "through float64 real and imaginary parts")


def _parts(t):
  return [tf.math.real(t), tf.math.imag(t)]


def _from_parts(fn):
  """fn on complex(re, im), returned as its real and imaginary parts."""
  return lambda re, im: _parts(fn(tf.complex(re, im)))


def _shape_id(shape):
  return "x".join(map(str, shape))


# ----- Complex transforms -----

_COMPLEX_OPS = [
    ("FFT", signal.fft, ((4,), (2, 3))),
    ("IFFT", signal.ifft, ((4,), (2, 3))),
    ("FFT2D", signal.fft2d, ((3, 4), (2, 2, 3))),
    ("IFFT2D", signal.ifft2d, ((3, 4), (2, 2, 3))),
    ("FFT3D", signal.fft3d, ((2, 2, 3),)),
    ("IFFT3D", signal.ifft3d, ((2, 2, 3), (2, 1, 2, 2))),
]

_COMPLEX_SPECS = [
    spec
    for op, fn, shapes in _COMPLEX_OPS
    for spec in (
        Spec(op, fn, [shapes[0]], "complex", _COMPLEX, order=0, note=_NOTE),
        *[Spec(op, _from_parts(fn), [s, s], f"re_im_{_shape_id(s)}")
          for s in shapes])
]

# ----- Real transforms -----


def _irfft(fn, lengths=None):
  return lambda x: fn(x, fft_length=lengths)


_REAL_SPECS = [
    *[Spec("RFFT", lambda x: _parts(signal.rfft(x)), [s], _shape_id(s))
      for s in ((4,), (5,), (2, 4))],
    *[Spec("RFFT2D", lambda x: _parts(signal.rfft2d(x)), [s], _shape_id(s))
      for s in ((3, 4), (2, 3, 3))],
    Spec("IRFFT", signal.irfft, [(3,)], "complex", _COMPLEX, order=0,
         note=_NOTE),
    Spec("IRFFT", lambda re, im: signal.irfft(tf.complex(re, im)),
         [(3,), (3,)], "re_im_even"),
    Spec("IRFFT", lambda re, im: signal.irfft(tf.complex(re, im), [5]),
         [(2, 3), (2, 3)], "re_im_odd"),
    Spec("IRFFT2D", signal.irfft2d, [(3, 3)], "complex", _COMPLEX, order=0,
         note=_NOTE),
    Spec("IRFFT2D", lambda re, im: signal.irfft2d(tf.complex(re, im)),
         [(3, 3), (3, 3)], "re_im_even"),
    Spec("IRFFT2D", lambda re, im: signal.irfft2d(tf.complex(re, im), [2, 5]),
         [(2, 2, 3), (2, 2, 3)], "re_im_odd"),
]

SPECS = _COMPLEX_SPECS + _REAL_SPECS


def _raw_rfft(fn, lengths):
  return lambda x: _parts(fn(input=x, fft_length=lengths))


def _raw_irfft(fn, lengths):
  return lambda re, im: fn(input=tf.complex(re, im), fft_length=lengths)


TF_FAILS = ("RFFT", "RFFT2D", "IRFFT", "IRFFT2D")

_FITTED = "input cropped or zero-padded to fft_length: TF's rule fails"

NUMERIC_ONLY_SPECS = [
    Spec("RFFT", _raw_rfft(raw.RFFT, [6]), [(2, 4)], "zero_padded",
         note=_FITTED),
    Spec("RFFT", _raw_rfft(raw.RFFT, [3]), [(5,)], "cropped", note=_FITTED),
    Spec("RFFT2D", _raw_rfft(raw.RFFT2D, [2, 5]), [(3, 4)],
         "cropped_and_padded", note=_FITTED),
    Spec("IRFFT", _raw_irfft(raw.IRFFT, [6]), [(2,), (2,)], "zero_padded",
         note=_FITTED),
    Spec("IRFFT", _raw_irfft(raw.IRFFT, [3]), [(2, 4), (2, 4)], "cropped",
         note=_FITTED),
    Spec("IRFFT2D", _raw_irfft(raw.IRFFT2D, [4, 4]), [(3, 2), (3, 2)],
         "cropped_and_padded", note=_FITTED),
]
