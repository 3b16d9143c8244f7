"""Meta-tests over the registry: every native rule is in the spec table,
and every NotDifferentiable declaration agrees with TF."""

from tensorflow.python.framework import op_def_registry
from tensorflow.python.framework import ops as tf_ops

from tfgrad import registry
from compat_tests import specs

# Native rules without a spec of their own, each with the reason and the
# test that exercises it instead.
_LEGACY_TENSOR_ARRAY = ("legacy name of the V3 op's semantics, sharing its "
                        "rule; TF cannot build these ops any more (removed "
                        "in GraphDef version 26), the V3 specs check the rule")
_V1_FRAME = ("a v1 control-flow op, built only as part of a v1 cond or while "
             "frame, whose rule reads the frame's context; "
             "test_v1_loops.py checks the rules on every construct against "
             "stock (Ref forms share the rule; RefEnter through a ref "
             "variable read in a loop), test_semantics.py the v1 cond")
UNSPECCED = {
    "PreventGradient": "its rule raises LookupError by design; "
                       "test_array_grad.py::test_prevent_gradient_raises_"
                       "lookup_error and test_errors.py check it",
    "XlaClusterOutput": "its rule raises RuntimeError by design, as TF's "
                        "does; test_xla_grad.py::test_cluster_output_grad_"
                        "raises_like_tf checks it",
    **{f"TensorArray{kind}{version}": _LEGACY_TENSOR_ARRAY
       for kind in ("Read", "Write", "Gather", "Scatter", "Concat", "Split")
       for version in ("", "V2")},
    **{f"{ref}{kind}": _V1_FRAME
       for kind in ("Switch", "Merge", "Enter", "Exit", "NextIteration")
       for ref in ("", "Ref")},
}

# Types we declare NotDifferentiable although TF registers a gradient rule:
# TF's rule returns None for every input, so the results are the same, and
# declaring them saves the zeros TF builds for their missing output grads.
_ALL_NONE = "TF's registered rule returns None for every input"
DELIBERATELY_NOT_DIFFERENTIABLE = {
    op_type: _ALL_NONE for op_type in (
        "ArgMax", "ArgMin", "Ceil", "Floor", "FloorDiv", "Rint", "Round",
        "LoopCond", "TruncateDiv")}


def test_every_native_rule_has_a_spec():
  specced = {s.op for s in specs.ALL_SPECS}
  missing = [k for k in registry.GRADIENTS.differentiable_keys()
             if k not in specced and k not in UNSPECCED]
  assert not missing, f"native rules without a spec: {missing}"


def test_specs_name_registered_rules():
  unknown = sorted({s.op for s in specs.ALL_SPECS} - set(registry.GRADIENTS.keys()))
  assert not unknown, f"specs for op types tfgrad does not register: {unknown}"


def test_spec_ids_are_unique():
  ids = [s.id for s in specs.ALL_SPECS]
  assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_limited_specs_say_why():
  silent = [s.id for s in specs.ALL_SPECS
            if (s.order == 0 or not s.strict or not s.runs) and not s.note]
  assert not silent, f"specs limited without a note: {silent}"
  not_run_but_numeric = [s.id for s in specs.ALL_SPECS
                         if not s.runs and s.order > 0]
  assert not not_run_but_numeric, not_run_but_numeric


def test_not_differentiable_declarations_agree_with_tf():
  disagree = []
  for op_type in registry.GRADIENTS.not_differentiable_keys():
    try:
      tf_rule = tf_ops.gradient_registry.lookup(op_type)
    except LookupError:
      continue  # TF has nothing registered: treated as a constant alike
    if tf_rule is not None and op_type not in DELIBERATELY_NOT_DIFFERENTIABLE:
      disagree.append(op_type)
  assert not disagree, f"declared NotDifferentiable but TF differentiates: {disagree}"


# Op types TF can differentiate that tfgrad leaves to TF's registry (they
# fall back in non-strict mode), each with the reason. Together with the
# UseTFGradient declarations this list must stay under 5% of TF's registry.
LEFT_TO_TF = {
    "EagerPyFunc": "its gradient lives in TF's private py_func token "
                   "registry and tape cache; there is nothing a rule of ours "
                   "could own",
    "_EagerConst": "eager-only op; TF's rule only raises",
    "TopK": "removed from current GraphDefs (TopKV2 replaces it); TF cannot "
            "build it, so no rule could be tested",
    "QuantizeAndDequantize": "removed from current GraphDefs (V2-V4 have "
                             "rules); cannot be built",
    "BatchNormWithGlobalNormalization": "removed from current GraphDefs "
                                        "(FusedBatchNorm* have rules); "
                                        "cannot be built",
    "CTCLossV2": "GPU-only kernel, and TF's rule reads the op's own "
                 "gradient output; CTCLoss has a rule",
    "SparseMatrixMul": "TF's rule raises NotImplementedError; no CPU kernel "
                       "to check one of ours against",
    "NcclAllReduce": "TF's rule needs every tensor on an assigned GPU device",
    "NcclBroadcast": "TF's rule needs every tensor on an assigned GPU device",
    "NcclReduce": "TF's rule needs every tensor on an assigned GPU device",
    "TPUEmbeddingActivations": "TF's rule stores the gradient in a "
                               "collection that TPU embedding training sets "
                               "up; not buildable without it",
}


def _tf_own_types():
  """TF's registry as TF itself fills it: {op type: rule or None}. Left
  out: names that are no op type, which tf.RegisterGradient (tests here) and
  tf.custom_gradient ("CustomGradient-N") add for gradient_override_map."""
  own = {}
  for op_type in tf_ops.gradient_registry.list():
    rule = tf_ops.gradient_registry.lookup(op_type)
    if rule is None or op_def_registry.get(op_type) is not None:
      own[op_type] = rule
  return own


def _tf_differentiable_types():
  return [t for t, rule in _tf_own_types().items() if rule is not None]


def test_every_tf_differentiable_type_is_covered_or_left_on_purpose():
  ours = registry.GRADIENTS
  uncovered = [t for t in _tf_differentiable_types()
               if t not in ours and t not in LEFT_TO_TF]
  assert not uncovered, (
      f"op types TF differentiates with no tfgrad rule, NotDifferentiable "
      f"or UseTFGradient declaration, and not in LEFT_TO_TF: {uncovered}")


def test_left_to_tf_list_is_current_and_small():
  ours = registry.GRADIENTS
  stale = [t for t in LEFT_TO_TF if t in ours]
  assert not stale, f"LEFT_TO_TF entries that now have a tfgrad entry: {stale}"
  left = set(LEFT_TO_TF) | set(ours.use_tf_keys())
  total = len(_tf_own_types())
  assert len(left) < 0.05 * total, (
      f"{len(left)} op types left to TF on purpose: more than 5% of {total}")
