"""Functional control flow: If, Case and their stateless forms.

TF's rules for these ops build the gradient of each branch or loop body as a
new function graph, differentiating the body with TF's internal
`_GradientsHelper(..., src_graph=body)`. tfgrad runs those rules through a
private view of their module in which that name is tfgrad's engine (see
`tf_compat.routed_through_tfgrad`), so the bodies are differentiated with
tfgrad's rules; the surrounding plumbing (accumulators for loop
intermediates, rewriting the forward op to output them) stays TF's. Strict
mode accepts these types for that reason.

While and StatelessWhile are not here: tfgrad builds their gradient loops
itself (`ops/while_grad.py`).

The v1 control-flow ops (Switch, Merge, Enter, Exit, NextIteration and
their Ref forms) have rules of tfgrad's own in `v1_control_flow_grad.py`;
the loop state they need is `tfgrad.v1_loops`.
"""

from tfgrad.registry import NotDifferentiable
from tfgrad.registry import UseTFGradient

for _op_type in ("If", "StatelessIf", "Case", "StatelessCase"):
  UseTFGradient(_op_type)


# v1 control flow (Switch, Merge, Enter, Exit, NextIteration and Ref forms):
# ops/v1_control_flow_grad.py.
NotDifferentiable("LoopCond")  # TF's rule returns None for its predicate
