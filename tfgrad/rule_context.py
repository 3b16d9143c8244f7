"""What the engine tells a rule about the call that runs it, beyond TF's
`rule(op, *grads)` signature: which of the op's inputs need no gradient.

TF's convention for that hint is an attribute on the Operation
(`op.skip_input_indices`, set by its eager tape). An Operation is shared by
every caller differentiating the graph, on any thread, so tfgrad never
writes it: the hint lives here, per thread, for the length of one rule
call, and rules read it through `unneeded_inputs(op)` (tfgrad's rules via
`ops/_helpers.needs_grad`). Rules from TF's registry are not told; they
build every input's gradient, as they do under stock `tf.gradients`.
"""

import contextlib
import threading

_EMPTY = frozenset()


class _RuleCalls(threading.local):
  """The rule calls open on this thread: (op, unneeded input indices),
  innermost last (a rule may differentiate a body, which calls rules)."""

  def __init__(self):
    super().__init__()
    self.stack = []


_calls = _RuleCalls()


@contextlib.contextmanager
def calling(op, unneeded):
  """The block runs `op`'s rule; inputs in `unneeded` lead to no x."""
  stack = _calls.stack
  stack.append((op, unneeded))
  try:
    yield
  finally:
    stack.pop()


def unneeded_inputs(op):
  """Indices of `op`'s inputs whose gradient nobody needs, as the engine
  said for the rule call running now on this thread (empty otherwise)."""
  stack = _calls.stack
  if stack and stack[-1][0] is op:
    return stack[-1][1]
  return _EMPTY
