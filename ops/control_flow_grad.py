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

The v1 control-flow ops (Switch, Merge, Enter, Exit, NextIteration,
LoopCond and their Ref forms) are not listed: graphs with v1 while loops
are handed to TF's engine as a whole (see `tfgrad.api`).
"""

from tfgrad.registry import NotDifferentiable
from tfgrad.registry import UseTFGradient

for _op_type in ("If", "StatelessIf", "Case", "StatelessCase"):
  UseTFGradient(_op_type)


# v1 control flow. Loops (Enter/Exit/NextIteration frames) never reach a
# rule here: graphs holding them are handed to TF's engine whole. Switch and
# Merge of a v1 `tf.cond` do, and TF's rules for them work from the cond's
# control-flow context, which lives on the forward ops.
for _op_type in ("Switch", "RefSwitch", "Merge", "RefMerge", "Enter",
                 "RefEnter", "Exit", "RefExit", "NextIteration",
                 "RefNextIteration"):
  UseTFGradient(_op_type)

NotDifferentiable("LoopCond")  # TF's rule returns None for its predicate
