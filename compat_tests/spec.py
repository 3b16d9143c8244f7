"""The shape of one entry in the rule table (see specs.py).

A spec names the op type it exercises, a builder that makes that op from
input tensors, the input shapes, the dtypes to compare against stock TF, the
input domain, and the highest derivative order to check numerically.
"""

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Spec:
  op: str                          # registry key the spec covers
  build: Callable                  # build(*xs) -> tensor or list of tensors
  shapes: Sequence[tuple]          # one static shape per x
  variant: str = ""                # label when an op has several specs
  dtypes: Sequence[str] = ("float64", "float32")
  domain: object = "real"          # a name in DOMAINS, or fn(rng, shape)
  order: int = 2                   # numeric check up to this order (0: none)
  strict: bool = True              # compare with TF's registry fallback off
  variables: bool = False          # xs are tf.Variables (build reads them)
  runs: bool = True                # False: no CPU kernel, so the graphs are
                                   # compared but not run (order must be 0)
  rtol: float = 1e-5               # numeric-check tolerance (float64)
  atol: float = 1e-6
  note: Optional[str] = None       # why a check is limited, where it is

  @property
  def id(self):
    return f"{self.op}-{self.variant}" if self.variant else self.op


DOMAINS = {
    "real": lambda rng, shape: rng.uniform(-2.0, 2.0, shape),
    "positive": lambda rng, shape: rng.uniform(0.5, 2.0, shape),
    "unit": lambda rng, shape: rng.uniform(-0.9, 0.9, shape),
    "open_unit": lambda rng, shape: rng.uniform(0.1, 0.9, shape),
    "nonzero": lambda rng, shape: (rng.choice([-1.0, 1.0], shape)
                                   * rng.uniform(0.5, 2.0, shape)),
    # distinct values at least 0.05 apart: max/min/sort-like ops stay smooth
    "distinct": lambda rng, shape: (rng.permutation(int(np.prod(shape)))
                                    .reshape(shape) * 0.1 - 1.0
                                    + rng.uniform(-0.02, 0.02, shape)),
}


def sample(domain, rng, shape, dtype):
  """Random input values of `dtype` drawn from `domain`."""
  make = DOMAINS[domain] if isinstance(domain, str) else domain
  values = np.asarray(make(rng, shape), dtype=np.float64)
  if np.dtype(dtype).kind == "c":
    values = values + 1j * np.asarray(make(rng, shape), dtype=np.float64)
  return values.astype(dtype)
