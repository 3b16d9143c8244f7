"""Control flow: where each family's gradient lives, and LoopCond.

tfgrad builds every control-flow gradient with its own code:

- If, StatelessIf, Case, StatelessCase: `ops/cond_grad.py` (branch gradient
  graphs and the forward rewrite in `tfgrad.functional`);
- calls of graph functions (PartitionedCall, StatefulPartitionedCall):
  `ops/call_grad.py`;
- While, StatelessWhile: `ops/while_grad.py` (gradient loops in
  `tfgrad.while_builder`);
- the v1 ops (Switch, Merge, Enter, Exit, NextIteration and their Ref
  forms): `ops/v1_control_flow_grad.py`, with the loop state of
  `tfgrad.v1_loops`.

LoopCond is declared here: its input is the loop's predicate, which has no
gradient (TF's rule returns None for it).
"""

from tfgrad.registry import NotDifferentiable

NotDifferentiable("LoopCond")
