"""Every bad input, table-driven: tfgrad raises what stock `tf.gradients`
raises, says where, and leaves the graph usable.

Each case is a named builder that builds its graph in the current default
graph (a fresh `tf.Graph`, or a `tf.function` being traced) and returns a
`Bad`: the failing call's arguments and a correct call on the same graph.
Each case runs through both engines, each in its own fresh graph, and
checks that
  * both raise the same exception type;
  * tfgrad's message names the case's location facts (y / x / grad_ys
    index, op name and type, input index, path to the op);
  * a correct call on the graph tfgrad failed on gives stock's gradients.
Cases where tfgrad deliberately differs (README, "Differences from stock
TF") carry the reason and assert tfgrad's documented behaviour instead.
"""

import dataclasses
import re
from typing import Callable, Optional, Tuple

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from tfgrad import registry
from compat_tests import differential


@dataclasses.dataclass
class Bad:
  """A failing call (`args` for gradients) and a correct one (`good`)."""
  args: dict
  good: dict


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  build: Callable[[], Bad]
  facts: Tuple[str, ...] = ()      # regexes tfgrad's message must match
  contexts: Tuple[str, ...] = ("graph", "function")
  # A documented difference: (reason, tfgrad's exception type or None when
  # tfgrad succeeds, stock's exception type or None when stock succeeds).
  difference: Optional[Tuple[str, Optional[type], Optional[type]]] = None


CASES = []


def case(*facts, contexts=("graph", "function"), difference=None):
  """Registers the decorated builder as a case named after it."""
  def register(build):
    CASES.append(Case(build.__name__, build, tuple(facts), contexts,
                      difference))
    return build
  return register


# ----- shared pieces -----

def _square(name="sq"):
  x = tf.constant([1.0, 2.0], name="x")
  return x, tf.multiply(x, x, name=name)


def _good(y, x, **kwargs):
  return dict(ys=y, xs=[x], **kwargs)


def _other_graph_pair():
  """x and y = x * x built in a graph other than the default one."""
  with tf.Graph().as_default():
    x = tf.constant([1.0, 2.0], name="other_x")
    return x, tf.multiply(x, x, name="other_y")


def _override(y_fn, name):
  """y_fn() built under gradient_override_map({'Square': name})."""
  with tf.compat.v1.get_default_graph().gradient_override_map(
      {"Square": name}):
    return y_fn()


# ----- rules with wrong results, registered with both engines -----
# tfgrad looks an override name up in its own registry first, then in
# TF's; stock only in TF's. Rules named Tfgrad* are registered with TF's
# registry; those named TfgradOwn* with tfgrad's too (by the fixture).

def _rule_too_many(op, grad):
  del op
  return [grad, grad]


def _rule_none_list(op, grad):
  del op, grad
  return []


def _rule_string(op, grad):
  del op, grad
  return "not a gradient"


def _rule_numpy(op, grad):
  del op, grad
  return np.ones([2], np.float32)


def _rule_wrong_shape(op, grad):
  del op, grad
  return tf.zeros([3])


def _rule_wrong_rank(op, grad):
  del op, grad
  return tf.zeros([2, 2])


def _rule_wrong_dtype(op, grad):
  del op
  return tf.cast(grad, tf.float64)


def _rule_float(op, grad):
  del op, grad
  return 2.0


def _rule_nested(op, grad):
  del op
  return [[grad]]


def _rule_raises(op, grad):
  del grad
  raise KeyError(f"rule of {op.name} looked for a missing key")


BAD_RULES = {
    "TooMany": _rule_too_many, "Empty": _rule_none_list,
    "String": _rule_string, "Numpy": _rule_numpy,
    "WrongShape": _rule_wrong_shape, "WrongRank": _rule_wrong_rank,
    "WrongDtype": _rule_wrong_dtype, "Nested": _rule_nested,
    "Float": _rule_float,
    "Raises": _rule_raises,
}
for _kind, _rule in BAD_RULES.items():
  tf.RegisterGradient(f"TfgradBadInput{_kind}")(_rule)
  tf.RegisterGradient(f"TfgradOwnBadInput{_kind}")(_rule)


@pytest.fixture(scope="module", autouse=True)
def _own_rules():
  """The TfgradOwn* rules in tfgrad's registry for this module only (the
  coverage meta-test checks every registered rule has a spec)."""
  for kind, rule in BAD_RULES.items():
    tfgrad.RegisterGradient(f"TfgradOwnBadInput{kind}")(rule)
  yield
  for kind in BAD_RULES:
    registry.GRADIENTS.unregister(f"TfgradOwnBadInput{kind}")


def _rule_case(kind, own, upstream=False):
  """A builder: x [-> Mul by 2] -> Square (overridden to the bad rule)."""
  prefix = "TfgradOwnBadInput" if own else "TfgradBadInput"

  def build():
    x = tf.constant([1.0, 2.0], name="x")
    a = tf.multiply(x, 2.0, name="doubled") if upstream else x
    y = _override(lambda: tf.square(a, name="bad_square"), prefix + kind)
    good = tf.multiply(x, 3.0, name="good_y")
    return Bad(dict(ys=y, xs=[x]), _good(good, x))
  return build


def _register_rule_cases():
  arity = (r"'bad_square'", r"Square|TfgradOwnBadInput|TfgradBadInput")
  for own in (False, True):
    tag = "own" if own else "tf"
    for kind, facts, upstream in [
        ("TooMany", arity + (r"returned 2 gradients", r"1 input"), False),
        ("Empty", arity + (r"returned 0 gradients",), False),
        ("String", arity + (r"input index 0", r"str"), False),
        ("Numpy", arity + (r"input index 0", r"ndarray"), False),
        ("WrongShape", arity + (r"input index 0", r"\(2,\)", r"\(3,\)"),
         False),
        ("WrongRank", arity + (r"input index 0", r"\(2,\)", r"\(2, 2\)"),
         False),
        ("WrongDtype", (r"Mul", r"float64", r"float32"), True),
        ("Nested", arity + (r"input index 0", r"list"), False),
        ("Float", arity + (r"input index 0", r"float"), False),
        ("Raises", (r"bad_square",), False)]:
      build = _rule_case(kind, own, upstream)
      build.__name__ = f"rule_{tag}_{kind.lower()}"
      case(*facts)(build)


_register_rule_cases()


# ----- ys -----

@case(r"ys\[1\]", r"None")
def y_none():
  x, y = _square()
  return Bad(dict(ys=[y, None], xs=[x]), _good(y, x))


@case(r"ys\[0\]", r"Operation")
def y_operation():
  x, y = _square()
  return Bad(dict(ys=[y.op], xs=[x]), _good(y, x))


@case(r"ys\[0\]", r"dict")
def y_dict():
  x, y = _square()
  return Bad(dict(ys=[{"y": y}], xs=[x]), _good(y, x))


@case(r"ys\[0\]", r"string", r"numeric")
def y_python_string():
  x, y = _square()
  return Bad(dict(ys=["abc"], xs=[x]), _good(y, x))


@case(r"ys\[0\]", r"'as_string|AsString", r"string", r"numeric")
def y_string_without_grad_ys():
  x, y = _square()
  return Bad(dict(ys=tf.strings.as_string(x), xs=[x]), _good(y, x))


@case(r"ys\[1\]", r"string", r"numeric")
def y_string_second_without_grad_ys():
  x, y = _square()
  return Bad(dict(ys=[y, tf.strings.as_string(x)], xs=[x]), _good(y, x))


@case(r"ys\[0\]", r"string", r"numeric")
def y_string_with_string_grad_ys():
  x, y = _square()
  return Bad(dict(ys=tf.strings.as_string(x), xs=[x],
                  grad_ys=[tf.constant(["a", "b"])]), _good(y, x))



@case(r"ys\[0\]", r"complex64", r"grad_ys")
def y_complex_without_grad_ys():
  x = tf.constant([1.0 + 1.0j], tf.complex64, name="cx")
  y = tf.multiply(x, x, name="cy")
  return Bad(dict(ys=y, xs=[x]),
             _good(y, x, grad_ys=[tf.constant([1.0 + 0.0j], tf.complex64)]))


@case(r"ys\[1\]", r"complex128", r"grad_ys")
def y_complex_second_grad_y_none():
  x = tf.constant([1.0 + 1.0j], tf.complex128, name="cx")
  y = tf.multiply(x, x, name="cy")
  one = tf.constant([1.0 + 0.0j], tf.complex128)
  return Bad(dict(ys=[y, y], xs=[x], grad_ys=[one, None]),
             _good(y, x, grad_ys=[one]))


@case(r"xs\[0\] \(x:0\) is in another graph than ys\[0\] \(other_y:0\)",
      contexts=("graph",))
def y_from_other_graph():
  x, y = _square()
  _, other_y = _other_graph_pair()
  return Bad(dict(ys=[other_y], xs=[x]), _good(y, x))


@case(r"ys\[1\] \(other_y:0\) is in another graph than ys\[0\] \(sq:0\)",
      contexts=("graph",))
def y_from_other_graph_second():
  x, y = _square()
  _, other_y = _other_graph_pair()
  return Bad(dict(ys=[y, other_y], xs=[x]), _good(y, x))


@case(r"ys\[0\]", r"resource", r"grad_ys")
def y_resource_with_resource_grad_y():
  x, y = _square()
  v = differential.variable([1.0, 2.0])
  return Bad(dict(ys=[v.handle], xs=[v.handle], grad_ys=[v.handle]),
             _good(y, x))


@case(r"ys\[0\]", r"variant", r"float32")
def y_variant_with_float_grad_y():
  x, y = _square()
  lst = tf.raw_ops.TensorListFromTensor(
      tensor=y, element_shape=tf.constant([], tf.int32))
  return Bad(dict(ys=[lst], xs=[x], grad_ys=[tf.constant(1.0)]), _good(y, x))


# ----- xs -----

@case(r"xs\[1\]", r"None")
def x_none():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x, None]), _good(y, x))


@case(r"xs\[0\]", r"Operation")
def x_operation():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x.op]), _good(y, x))


@case(r"xs\[0\]", r"dict")
def x_dict():
  x, y = _square()
  return Bad(dict(ys=y, xs=[{"x": x}]), _good(y, x))


@case(r"xs\[0\] \(other_x:0\) is in another graph than ys\[0\]",
      contexts=("graph",))
def x_from_other_graph():
  x, y = _square()
  other_x, _ = _other_graph_pair()
  return Bad(dict(ys=y, xs=[other_x]), _good(y, x))


@case(r"xs\[1\] \(other_x:0\) is in another graph", contexts=("graph",))
def x_from_other_graph_second():
  x, y = _square()
  other_x, _ = _other_graph_pair()
  return Bad(dict(ys=y, xs=[x, other_x]), _good(y, x))


@case(r"xs\[0\] \(other_v", r"another graph", contexts=("graph",))
def x_variable_from_other_graph():
  x, y = _square()
  with tf.Graph().as_default():
    v = tf.Variable([1.0, 2.0], name="other_v")
  return Bad(dict(ys=y, xs=[v]), _good(y, x))



# ----- grad_ys -----

@case(r"Length mismatch", r"3 grad_ys", r"1 ys")
def grad_ys_too_many():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], grad_ys=[np.float32([1.0, 1.0])] * 3),
             _good(y, x))


@case(r"Length mismatch", r"1 grad_ys", r"2 ys")
def grad_ys_too_few():
  x, y = _square()
  return Bad(dict(ys=[y, y], xs=[x], grad_ys=[np.float32([1.0, 1.0])]),
             _good(y, x))


@case(r"Length mismatch", r"0 grad_ys", r"1 ys")
def grad_ys_empty():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], grad_ys=[]), _good(y, x))


@case(r"grad_ys\[0\]", r"float64", r"float32")
def grad_y_float32_for_float64_y():
  x = tf.constant([1.0, 2.0], tf.float64, name="x")
  y = tf.multiply(x, x, name="sq")
  return Bad(dict(ys=y, xs=[x], grad_ys=[tf.constant([1.0, 1.0])]),
             _good(y, x))


@case(r"grad_ys\[0\]", r"float16", r"float32")
def grad_y_float16_for_float32_y():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x],
                  grad_ys=[tf.constant([1.0, 1.0], tf.float16)]), _good(y, x))


@case(r"grad_ys\[0\]", r"int32", r"float32")
def grad_y_int32_for_float_y():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], grad_ys=[tf.constant([1, 1])]), _good(y, x))



@case(r"grad_ys\[1\]", r"float64", r"float32")
def grad_y_second_of_two_wrong_dtype():
  x, y = _square()
  return Bad(dict(ys=[y, y], xs=[x],
                  grad_ys=[None, tf.constant([1.0, 1.0], tf.float64)]),
             _good(y, x))


@case(r"grad_ys\[0\]", r"complex64", r"real or integer")
def grad_y_complex_for_real_y():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], grad_ys=[np.complex64([1.0, 1.0])]),
             _good(y, x))


@case(r"grad_ys\[0\]", r"float32", r"complex")
def grad_y_real_for_complex_y():
  x = tf.constant([1.0 + 1.0j], tf.complex64, name="cx")
  y = tf.multiply(x, x, name="cy")
  return Bad(dict(ys=y, xs=[x], grad_ys=[np.float32([1.0])]),
             _good(y, x, grad_ys=[np.complex64([1.0])]))


@case(r"grad_ys\[0\]", r"string", r"real or integer")
def grad_y_string_for_real_y():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], grad_ys=[tf.constant(["a", "b"])]),
             _good(y, x))


@case(r"grad_ys\[0\]", r"bool", r"real or integer")
def grad_y_bool_for_real_y():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], grad_ys=[tf.constant([True, False])]),
             _good(y, x))


@case(r"grad_ys\[0\]", r"\(3,\)", r"\(2,\)")
def grad_y_wrong_shape():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], grad_ys=[tf.constant([1.0, 1.0, 1.0])]),
             _good(y, x))


@case(r"grad_ys\[0\]", r"\(1, 2\)", r"\(2,\)")
def grad_y_wrong_rank():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], grad_ys=[tf.constant([[1.0, 1.0]])]),
             _good(y, x))


@case(r"grad_ys\[0\]", r"\(3,\)", r"\(2,\)")
def grad_y_python_list_wrong_shape():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], grad_ys=[[1.0, 1.0, 1.0]]), _good(y, x))


@case(r"grad_ys\[0\]", r"IndexedSlices")
def grad_y_indexed_slices_for_dense_y():
  x, y = _square()
  slices = tf.IndexedSlices(tf.constant([[1.0]]), tf.constant([0]),
                            tf.constant([2, 1]))
  return Bad(dict(ys=y, xs=[x], grad_ys=[slices]), _good(y, x))


@case(r"grad_ys\[0\] \(other_y:0\) is in another graph",
      contexts=("graph",))
def grad_y_from_other_graph():
  x, y = _square()
  _, other_y = _other_graph_pair()
  return Bad(dict(ys=y, xs=[x], grad_ys=[other_y]), _good(y, x))


@case(r"grad_ys\[0\]", r"dict")
def grad_y_dict():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], grad_ys=[{"g": y}]), _good(y, x))


@case(r"grad_ys\[0\]", r"float32", r"float64")
def stopped_ys_grad_y_wrong_dtype():
  """Nothing flows from y to x, but the grad_ys are still checked."""
  x, y = _square()
  s = tf.stop_gradient(x, name="stopped")
  return Bad(dict(ys=[s, s], xs=[x],
                  grad_ys=[tf.constant([1.0, 1.0], tf.float64),
                           tf.constant([1.0, 1.0])]), _good(y, x))


@case(r"grad_ys\[1\]", r"\(3,\)", r"\(2,\)")
def stopped_ys_grad_y_wrong_shape():
  x, y = _square()
  s = tf.stop_gradient(x, name="stopped")
  return Bad(dict(ys=[s, s], xs=[x],
                  grad_ys=[tf.constant([1.0, 1.0]),
                           tf.constant([1.0, 1.0, 1.0])]), _good(y, x))


@case(r"grad_ys\[1\]", r"int32", r"float32")
def stopped_ys_grad_y_int():
  x, y = _square()
  s = tf.stop_gradient(x, name="stopped")
  return Bad(dict(ys=[s, s], xs=[x],
                  grad_ys=[tf.constant([1.0, 1.0]), tf.constant([1, 1])]),
             _good(y, x))


# ----- options -----

@case(r"aggregation_method", r"7")
def aggregation_method_unknown_int():
  x = tf.constant([1.0, 2.0], name="x")
  y = tf.add(x * x, x, name="sum_of_two")
  return Bad(dict(ys=y, xs=[x], aggregation_method=7), _good(y, x))


@case(r"aggregation_method", r"fastest")
def aggregation_method_unknown_string():
  x = tf.constant([1.0, 2.0], name="x")
  y = tf.add(x * x, x, name="sum_of_two")
  return Bad(dict(ys=y, xs=[x], aggregation_method="fastest"), _good(y, x))


@case(r"aggregation_method", r"7", difference=(
    "README: an invalid aggregation_method raises ValueError always; stock "
    "TF checks it only once it processes an op between ys and xs",
    ValueError, None))
def aggregation_method_unknown_nothing_to_aggregate():
  x, y = _square()
  unused = tf.constant(2.0, name="unused")
  return Bad(dict(ys=y, xs=[unused], aggregation_method=7), _good(y, x))


@case(r"unconnected_gradients", r"sometimes")
def unconnected_gradients_unknown_string():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], unconnected_gradients="sometimes"),
             _good(y, x))


@case(r"unconnected_gradients", r"5")
def unconnected_gradients_int():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], unconnected_gradients=5), _good(y, x))


@case(r"unconnected_gradients", r"None")
def unconnected_gradients_none():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], unconnected_gradients=None), _good(y, x))


# ----- stop_gradients -----

@case(r"stop_gradients\[0\]", r"float")
def stop_gradients_python_float():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], stop_gradients=[1.0]), _good(y, x))


@case(r"stop_gradients\[1\]", r"None")
def stop_gradients_none_entry():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], stop_gradients=[x, None]), _good(y, x))


@case(r"stop_gradients\[0\]", r"str")
def stop_gradients_string():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], stop_gradients="x"), _good(y, x))


@case(r"stop_gradients\[0\]", r"ndarray")
def stop_gradients_numpy():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], stop_gradients=[np.ones(2)]), _good(y, x))


@case(r"stop_gradients\[0\]", r"Operation")
def stop_gradients_operation():
  x, y = _square()
  return Bad(dict(ys=y, xs=[x], stop_gradients=[x.op]), _good(y, x))


@case(r"stop_gradients\[0\] \(other_x:0\) is in another graph",
      contexts=("graph",))
def stop_gradients_from_other_graph():
  x, y = _square()
  other_x, _ = _other_graph_pair()
  return Bad(dict(ys=y, xs=[x], stop_gradients=[other_x]), _good(y, x))


# ----- ops without a gradient -----

@case(r"'sq'", r"Square", r"TfgradBadInputNoSuchName", r"not registered",
      r"sum <- sq")
def override_unknown_name():
  x = tf.constant([1.0, 2.0], name="x")
  sq = _override(lambda: tf.square(x, name="sq"), "TfgradBadInputNoSuchName")
  y = tf.reduce_sum(sq, name="sum")
  return Bad(dict(ys=y, xs=[x]), _good(tf.multiply(x, 3.0), x))


@case(r"'prevented'", r"PreventGradient", r"no way")
def prevent_gradient():
  x = tf.constant([1.0, 2.0], name="x")
  p = tf.raw_ops.PreventGradient(input=x, message="no way", name="prevented")
  y = tf.multiply(p, 2.0, name="y")
  return Bad(dict(ys=y, xs=[x]), _good(tf.multiply(x, 3.0), x))


@case(r"'(while/)?inner_sq'", r"Square", r"TfgradBadInputNoSuchName",
      r"while <- \[body of \w*While\] <- .*inner_sq")
def loop_body_without_gradient():
  x = tf.constant([1.0, 2.0], name="x")

  def body(i, v):
    return i + 1, _override(lambda: tf.square(v, name="inner_sq"),
                            "TfgradBadInputNoSuchName")
  _, y = tf.while_loop(lambda i, v: i < 2, body, [tf.constant(0), x])
  return Bad(dict(ys=y, xs=[x]), _good(tf.multiply(x, 3.0), x))


@case(r"'inner_sq'", r"Square", r"TfgradBadInputNoSuchName",
      r"fn_call <- \w+ <- \[body of \w*PartitionedCall\] <- .*inner_sq")
def function_body_without_gradient():
  x = tf.constant([1.0, 2.0], name="x")

  @tf.function
  def inner(v):
    return _override(lambda: tf.square(v, name="inner_sq"),
                     "TfgradBadInputNoSuchName")
  y = tf.identity(inner(x), name="fn_call")
  return Bad(dict(ys=y, xs=[x]), _good(tf.multiply(x, 3.0), x))


@case(r"'(cond/)?inner_sq'", r"Square", r"TfgradBadInputNoSuchName",
      r"cond <- \[body of \w*If\] <- .*inner_sq")
def cond_branch_without_gradient():
  x = tf.constant([1.0, 2.0], name="x")
  y = tf.cond(tf.constant(True),
              lambda: _override(lambda: tf.square(x, name="inner_sq"),
                                "TfgradBadInputNoSuchName"),
              lambda: x * 2.0)
  return Bad(dict(ys=y, xs=[x]), _good(tf.multiply(x, 3.0), x))


# ----- calls in the wrong place -----

@case(r"eager", contexts=("eager",))
def eager_mode():
  x = tf.constant([1.0, 2.0])
  return Bad(dict(ys=x * x, xs=[x]), None)


@case(r"eager", contexts=("eager",))
def eager_mode_with_grad_ys():
  x = tf.constant([1.0, 2.0])
  return Bad(dict(ys=x * x, xs=[x], grad_ys=[tf.constant([1.0, 1.0])]), None)


@case(r"xs\[0\] \(outside:0\) is in another graph than ys\[0\] \(inside",
      contexts=("graph",))
def gradient_in_cond_branch_of_outside_x():
  x = tf.constant([1.0, 2.0], name="x")
  outside = tf.multiply(x, x, name="outside")
  captured = {}

  def branch():
    inside = tf.multiply(outside, 2.0, name="inside")
    captured["call"] = dict(ys=inside, xs=[outside])
    return inside
  tf.cond(tf.constant(True), branch, lambda: outside)
  return Bad(captured["call"], _good(outside, x))


# ----- table checks -----

def _error(engine, args):
  try:
    engine(**args)
  except Exception as e:  # pylint: disable=broad-except
    return e
  return None


def _good_values(bad):
  """The correct call with both engines, in the current graph."""
  ours = tfgrad.gradients(**bad.good)
  theirs = tf.gradients(**bad.good)
  return ours, theirs


def _check_message(c, error):
  for fact in c.facts:
    assert re.search(fact, str(error)), (
        f"{c.name}: tfgrad's message lacks {fact!r}: {error}")


def _check_types(c, ours, theirs):
  if c.difference:
    reason, ours_type, theirs_type = c.difference
    assert type(ours) is ours_type if ours_type else ours is None, reason
    assert (type(theirs) is theirs_type if theirs_type
            else theirs is None), reason
    return
  assert theirs is not None, f"{c.name}: stock accepted the call"
  assert type(ours) is type(theirs), (
      f"{c.name}: tfgrad raised {type(ours).__name__}: {ours}; stock "
      f"{type(theirs).__name__}: {theirs}")


def _in_graph(c, engine):
  graph = tf.Graph()
  with graph.as_default():
    bad = c.build()
    error = _error(engine, bad.args)
    if engine is not tfgrad.gradients or error is None:
      return error, None
    ours, theirs = _good_values(bad)
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      values = (differential._run(sess, ours),  # pylint: disable=protected-access
                differential._run(sess, theirs))  # pylint: disable=protected-access
    return error, (ours, theirs) + values


def _in_function(c, engine):
  out = {}

  @tf.function
  def run():
    differential.rewind_variables()
    bad = c.build()
    out["error"] = _error(engine, bad.args)
    if engine is not tfgrad.gradients or out["error"] is None:
      return [], []
    ours, theirs = _good_values(bad)
    out["structure"] = ([differential.describe(g) for g in ours],
                        [differential.describe(g) for g in theirs])
    return ([differential._fetch(g) for g in ours],  # pylint: disable=protected-access
            [differential._fetch(g) for g in theirs])  # pylint: disable=protected-access

  with differential.variables_kept_across_traces():
    ours_v, theirs_v = run()
  return out["error"], (out.get("structure"), ours_v, theirs_v)


def _in_eager(c, engine):
  return _error(engine, c.build().args), None


RUNNERS = {"graph": _in_graph, "function": _in_function, "eager": _in_eager}

PARAMS = [pytest.param(c, where, id=f"{c.name}-{where}")
          for c in CASES for where in c.contexts]


def test_table_is_large():
  assert len(CASES) >= 60
  assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c,where", PARAMS)
def test_bad_input(c, where):
  run = RUNNERS[where]
  theirs, _ = run(c, tf.gradients)
  ours, after = run(c, tfgrad.gradients)
  _check_types(c, ours, theirs)
  if ours is not None:
    _check_message(c, ours)
  if after is None:
    return
  if where == "graph":
    ours_g, theirs_g, ours_v, theirs_v = after
    differential.assert_same(ours_g, theirs_g, ours_v, theirs_v)
  else:
    structure, ours_v, theirs_v = after
    assert structure[0] == structure[1]
    for a, b in zip(ours_v, theirs_v):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


# ----- grad_ys that look wrong but that TF accepts: so does tfgrad -----

def _unconnected_y_float64_grad_y():
  x, _ = _square()
  other = tf.constant([3.0, 4.0], name="unrelated")
  return dict(ys=[other], xs=[x],
              grad_ys=[tf.constant([1.0, 1.0], tf.float64)])


def _y_is_x_float64_grad_y():
  x, _ = _square()
  return dict(ys=[x], xs=[x], grad_ys=[tf.constant([1.0, 1.0], tf.float64)])


def _scalar_grad_y_for_vector_y():
  x, y = _square()
  return dict(ys=[y], xs=[x], grad_ys=[tf.constant(2.0)])


def _scalar_grad_y_through_two_rules():
  x, _ = _square()
  return dict(ys=[tf.sin(x) * x], xs=[x], grad_ys=[tf.constant(3.0)])


@pytest.mark.parametrize("build", [
    _unconnected_y_float64_grad_y, _y_is_x_float64_grad_y,
    _scalar_grad_y_for_vector_y, _scalar_grad_y_through_two_rules])
def test_grad_ys_tf_accepts_are_accepted(build):
  """Pruning never skips a check TF makes, and tfgrad adds none: a
  grad_ys entry that no rule combines with its y, or that a rule
  broadcasts, gives TF's result."""
  graph = tf.Graph()
  with graph.as_default():
    args = build()
    ours = tfgrad.gradients(**args)
    theirs = tf.gradients(**args)
    with tf.compat.v1.Session(graph=graph) as sess:
      differential.assert_same(ours, theirs, differential._run(sess, ours),  # pylint: disable=protected-access
                               differential._run(sess, theirs))  # pylint: disable=protected-access
