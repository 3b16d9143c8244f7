"""Meta-tests over the registry: every native rule is in the spec table,
and every NotDifferentiable declaration agrees with TF."""

from tensorflow.python.framework import ops as tf_ops

from tfgrad import registry
from compat_tests import specs

# Native rules without a spec of their own, each with the reason and the
# test that exercises it instead.
_LEGACY_TENSOR_ARRAY = ("legacy name of the V3 op's semantics, sharing its "
                        "rule; TF cannot build these ops any more (removed "
                        "in GraphDef version 26), the V3 specs check the rule")
UNSPECCED = {
    "PreventGradient": "its rule raises LookupError by design; "
                       "test_array_grad.py::test_prevent_gradient_raises_"
                       "lookup_error and test_errors.py check it",
    **{f"TensorArray{kind}{version}": _LEGACY_TENSOR_ARRAY
       for kind in ("Read", "Write", "Gather", "Scatter", "Concat", "Split")
       for version in ("", "V2")},
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
