"""Routing TensorFlow's own gradient entry points through tfgrad.

After `install()`, `tf.gradients`, `tf.compat.v1.gradients`, the
`gradients_impl`/`gradients` module functions that v1 optimizers call,
`tf.hessians` and its v1 twin (as `tfgrad.hessians`), and TF's internal
`_GradientsHelper` (which TF's gradients of `tf.cond`, `tf.while_loop`
and `tf.function` calls use, with `src_graph=`) all run tfgrad.
`uninstall()` puts back the very objects that were there before.

`install(checkpoints=...)` and `installed(checkpoints=...)` also set the
rematerialization (`tfgrad.remat`) of every gradient call that leaves
`checkpoints` at None, TF's own entry points included (they have no such
keyword). Precedence, per call: an explicit `checkpoints=` on the call;
else the innermost `installed(checkpoints=...)` block of the calling
thread that gave one (a block's setting is its thread's alone); else the
last `install(checkpoints=...)` (process-wide, like the patching itself);
else None, the plain pass. TF's internal `_GradientsHelper` (the bodies of
`tf.cond`, `tf.while_loop` and function calls) always runs plain.
"""

import contextlib
import importlib
import threading

import tensorflow as tf

from tfgrad import api
from tfgrad import higher_order
from tfgrad import remat

# (module path, attribute, replacement). Module paths are resolved lazily.
_PATCHES = (
    ("tensorflow", "gradients", api.gradients),
    ("tensorflow.compat.v1", "gradients", api.gradients_v1),
    ("tensorflow.compat.v2", "gradients", api.gradients),
    ("tensorflow.python.ops.gradients_impl", "gradients", api.gradients_v1),
    ("tensorflow.python.ops.gradients_impl", "gradients_v2", api.gradients),
    ("tensorflow.python.ops.gradients", "gradients", api.gradients_v1),
    ("tensorflow.python.ops.gradients", "gradients_v2", api.gradients),
    ("tensorflow.python.ops.gradients_util", "_GradientsHelper",
     api.gradients_helper),
    ("tensorflow", "hessians", higher_order.hessians),
    ("tensorflow.compat.v1", "hessians", higher_order.hessians_v1),
    ("tensorflow.compat.v2", "hessians", higher_order.hessians),
    ("tensorflow.python.ops.gradients_impl", "hessians",
     higher_order.hessians_v1),
    ("tensorflow.python.ops.gradients_impl", "HessiansV2",
     higher_order.hessians),
    ("tensorflow.python.ops.gradients", "hessians", higher_order.hessians_v1),
)

_saved = {}  # (module path, attribute) -> original object
# install()/uninstall() may be called from any thread: each runs whole.
_lock = threading.RLock()


def _module(path):
  if path == "tensorflow":
    return tf
  if path == "tensorflow.compat.v1":
    return tf.compat.v1
  if path == "tensorflow.compat.v2":
    return tf.compat.v2
  return importlib.import_module(path)


def is_installed():
  return bool(_saved)


class _Holders:
  """Who wants tfgrad installed: an explicit install(), and how many
  `installed()` blocks are open (on any thread)."""
  explicit = False
  blocks = 0


def _patch():
  if _saved:
    return
  for path, attr, replacement in _PATCHES:
    module = _module(path)
    if hasattr(module, attr):
      _saved[(path, attr)] = getattr(module, attr)
      setattr(module, attr, replacement)


def _restore():
  for (path, attr), original in _saved.items():
    setattr(_module(path), attr, original)
  _saved.clear()


def install(checkpoints=None):
  """Makes TF's gradient entry points run tfgrad until `uninstall()`;
  idempotent, thread-safe. `checkpoints` ("memory", "speed", a
  `tfgrad.MemoryBudget`, or None) becomes the default of every gradient
  call that does not pass its own (see the module doc); each call of
  `install` sets it anew."""
  remat.check_default(checkpoints)
  with _lock:
    _Holders.explicit = True
    _patch()
    remat.set_installed_default(checkpoints)


def uninstall():
  """Restores exactly the objects `install()` replaced, whoever asked for
  them (open `installed()` blocks too); idempotent, thread-safe."""
  with _lock:
    _Holders.explicit = False
    _Holders.blocks = 0
    _restore()
    remat.set_installed_default(None)


@contextlib.contextmanager
def installed(checkpoints=None):
  """Context manager: tfgrad installed inside. Blocks may be open on
  several threads at once: TF is restored when the last one closes,
  unless `install()` was called explicitly. `checkpoints` is the default
  of the gradient calls this thread makes inside the block (other
  threads' calls never see it); None keeps the enclosing default."""
  remat.check_default(checkpoints)
  with _lock:
    _Holders.blocks += 1
    _patch()
  try:
    with remat.thread_default(checkpoints):
      yield
  finally:
    with _lock:
      _Holders.blocks = max(0, _Holders.blocks - 1)
      if not _Holders.blocks and not _Holders.explicit:
        _restore()
