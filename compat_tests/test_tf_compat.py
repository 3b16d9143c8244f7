"""tf_compat's shortcuts give what TF's own slower paths give."""

import pytest
import tensorflow as tf

from tensorflow.core.framework import attr_value_pb2
from tfgrad import tf_compat


@pytest.mark.parametrize("values", [
    [],
    [b"loc:@a"],
    [b"loc:@dense_1/kernel", b"loc:@x"],
    [b"loc:@" + b"n" * 200],            # lengths past one varint byte
    [b"loc:@" + b"m" * 20000, b""],
])
def test_serialized_string_list_attr_is_the_protos_encoding(values):
  expected = attr_value_pb2.AttrValue(
      list=attr_value_pb2.AttrValue.ListValue(s=values)).SerializeToString()
  assert tf_compat.serialized_string_list_attr(values) == expected


def _read_attrs_by_parsing(op):
  return {k: v for k, v in op.node_def.attr.items()
          if k in ("_class", "_gradient_op_type") or k.startswith("_Xla")}


def test_private_attrs_finds_what_a_full_parse_finds():
  g = tf.Graph()
  with g.as_default():
    x = tf.constant([1.0, 2.0], name="x")
    plain = tf.identity(x, name="plain")
    with tf.compat.v1.colocate_with(x.op):
      colocated = tf.identity(x, name="colocated")
    with g.gradient_override_map({"Identity": "CustomName"}):
      overridden = tf.identity(x, name="overridden")
    from tensorflow.python.compiler.xla import jit  # pylint: disable=g-import-not-at-top
    with jit.experimental_jit_scope(separate_compiled_gradients=True):
      compiled = tf.identity(x, name="compiled")
    # A name containing a marker, with no such attribute: parsed, found empty.
    misleading = tf.identity(x, name="a_class_gradient_op_type_Xla")
  for t in (plain, colocated, overridden, compiled, misleading):
    found = tf_compat.private_attrs(t.op)
    assert found == _read_attrs_by_parsing(t.op), t.op.name
  assert tf_compat.private_attrs(plain.op) == {}
  assert set(tf_compat.private_attrs(colocated.op)) == {"_class"}
  assert tf_compat.private_attrs(overridden.op)[
      "_gradient_op_type"].s == b"CustomName"
  assert {"_XlaCompile", "_XlaScope", "_XlaSeparateCompiledGradients"} <= set(
      tf_compat.private_attrs(compiled.op))


def _identity(graph, x, **kwargs):
  attrs = {"T": tf_compat.attr_value(type=x.dtype.as_datatype_enum)}
  return tf_compat.create_op(graph, "Identity", [x], attrs,
                             tf_compat.op_def("Identity"), None, [x],
                             **kwargs).outputs[0]


@pytest.mark.parametrize("in_loop", [False, True])
def test_create_op_without_control_dependencies(in_loop):
  """`use_control_dependencies=False` ignores the graph's control
  dependency scopes (as `control_dependencies(None)`) but keeps the op in
  the current v1 loop context; the default takes them."""
  from tensorflow.python.ops import control_flow_util  # pylint: disable=g-import-not-at-top
  saved = control_flow_util.ENABLE_CONTROL_FLOW_V2
  control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
  built = {}
  try:
    g = tf.Graph()
    with g.as_default():
      gate = tf.constant(0.0, name="gate")

      def body(i, x):
        ctxt = g._get_control_flow_context()  # pylint: disable=protected-access
        gate_in = tf.identity(x, name="gate_in")
        with tf.control_dependencies([gate_in if in_loop else gate]):
          built["with"] = _identity(g, x)
          built["without"] = _identity(g, x, use_control_dependencies=False)
        built["ctxt"] = ctxt
        return i + 1, built["with"] + built["without"]
      if in_loop:
        tf.compat.v1.while_loop(lambda i, x: i < 2, body,
                                [tf.constant(0), tf.constant(1.0)])
      else:
        built["ctxt"] = None
        x = tf.constant(1.0)
        with tf.control_dependencies([gate]):
          built["with"] = _identity(g, x)
          built["without"] = _identity(g, x, use_control_dependencies=False)
  finally:
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = saved
  assert built["with"].op.control_inputs
  assert not built["without"].op.control_inputs
  assert built["without"].op._get_control_flow_context() is built["ctxt"]  # pylint: disable=protected-access


@pytest.mark.parametrize("names", [
    ("transpose_a", "transpose_b"),
    ("grad_a", "transpose_b"),
    ("T",),          # not a bool: get_attr's value
    ("missing",),    # absent: get_attr's ValueError
])
def test_bool_attrs_is_get_attr(names):
  with tf.Graph().as_default():
    a = tf.zeros([2, 3])
    op = tf.matmul(a, a, transpose_b=True).op
    try:
      expected = tuple(op.get_attr(n) for n in names)
    except ValueError:
      with pytest.raises(ValueError):
        tf_compat.bool_attrs(op, *names)
      return
    assert tf_compat.bool_attrs(op, *names) == expected


def test_attr_protos_are_the_ops_attributes():
  with tf.Graph().as_default():
    x = tf.zeros([1, 8, 8, 2])
    op = tf.nn.conv2d(x, tf.zeros([3, 3, 2, 4]), strides=2,
                      padding="SAME", dilations=1).op
    names = ("strides", "padding", "data_format", "dilations")
    protos = tf_compat.attr_protos(op, names)
    for name in names:
      assert protos[name] == op.node_def.attr[name]
    with pytest.raises(ValueError):
      tf_compat.attr_protos(op, ("missing",))
