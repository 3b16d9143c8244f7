"""tfgrad.check_gradients: passes functions whose derivatives are right
(known in closed form, checked here against it too), and catches wrong
rules, a registered one (a tfgrad rule for `Square` under
`gradient_override_map`, registered for the length of a test) and
`tf.custom_gradient`s, at first and at second order."""

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from tfgrad import registry

_WRONG = "TfgradCheckGradientsTestWrongSquare"


@pytest.fixture
def wrong_square():
  """tf.square whose tfgrad rule is off by grad: 2x + 1 for 2x."""
  @tfgrad.RegisterGradient(_WRONG)
  def _wrong_square_grad(op, grad):
    """grad * (2x + 1)."""
    return grad * (2.0 * op.inputs[0] + 1.0)

  def square(x):
    with tf.compat.v1.get_default_graph().gradient_override_map(
        {"Square": _WRONG}):
      return tf.square(x)
  yield square
  registry.GRADIENTS.unregister(_WRONG)


def _closed_form_jacobian(x, w):
  """d tanh(x @ w) / d x and / d w, from sech^2."""
  s = 1.0 - np.tanh(x @ w) ** 2                       # [b, n]
  b, m = x.shape
  n = w.shape[1]
  dx = np.zeros((b, n, b, m))
  dw = np.zeros((b, n, m, n))
  for i in range(b):
    for j in range(n):
      dx[i, j, i, :] = s[i, j] * w[:, j]
      dw[i, j, :, j] = s[i, j] * x[i, :]
  return dx, dw


def test_known_derivatives_pass_at_both_orders():
  rng = np.random.default_rng(0)
  x, w = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))

  def fn(a, b):
    return tf.tanh(a @ b)
  report = tfgrad.check_gradients(fn, [x, w], rtol=1e-7, atol=1e-8)
  assert report.ok and report.checked == 2 * 4 * (2 * 3 + 3 * 4)
  assert report.max_error < 1e-8
  # The Jacobian it checked is the closed form's.
  with tf.Graph().as_default():
    a, b = tf.constant(x), tf.constant(w)
    jx, jw = tfgrad.jacobian(fn(a, b), [a, b])
    with tf.compat.v1.Session() as sess:
      got = sess.run([jx, jw])
  for g, want in zip(got, _closed_form_jacobian(x, w)):
    np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12)
  assert tfgrad.check_gradients(fn, [x, w], order=2).ok


@pytest.mark.parametrize("fn,args", [
    (lambda x: tf.sin(x) * tf.exp(x), [np.linspace(-1.0, 1.0, 5)]),
    (lambda x, k: x ** 3 * k, [np.array([0.5, -2.0]), 3]),   # k: a constant
    (lambda x: {"a": tf.reduce_sum(x * x), "b": tf.sqrt(x)},
     [np.array([[1.0, 2.0], [3.0, 4.0]])]),
    (lambda x: tf.nn.softmax(x), [np.array([[0.1, 0.5, -0.3]])]),
])
def test_functions_with_known_derivatives(fn, args):
  for order in (1, 2):
    report = tfgrad.check_gradients(fn, args, order=order)
    assert report.ok and report.checked > 0, str(report)


def test_a_wrong_registered_rule_is_caught_and_located(wrong_square):
  x = np.array([[0.5, -1.0, 2.0]])

  def fn(a, b):
    return wrong_square(a) + b

  with pytest.raises(tfgrad.GradientCheckError) as caught:
    tfgrad.check_gradients(fn, [x, np.ones((1, 3))])
  report = caught.value.report
  assert not report.ok and report.failures == 3 and report.checked == 18
  # Only the diagonal of d out / d args[0] is wrong, off by exactly 1.
  assert {(m.output, m.arg) for m in report.worst} == {(0, 0)}
  assert {m.out_index for m in report.worst} == {(0, 0), (0, 1), (0, 2)}
  for m in report.worst:
    assert m.out_index == m.in_index
    assert m.symbolic - m.numeric == pytest.approx(1.0, abs=1e-6)
  assert "d args[0][0, 2]" in str(report) or "d args[0][0, 1]" in str(report)


def test_report_instead_of_raising():
  @tf.custom_gradient
  def wrong_sin(x):
    return tf.sin(x), lambda g: g * tf.sin(x)
  report = tfgrad.check_gradients(lambda x: wrong_sin(x),
                                  [np.linspace(0.2, 1.0, 4)],
                                  raise_on_failure=False, worst=2)
  assert not report.ok and report.failures == 4 and len(report.worst) == 2
  errors = [m.error for m in report.worst]
  assert errors == sorted(errors, reverse=True)
  assert "4 out of tolerance" in str(report)


def test_a_rule_wrong_only_at_second_order():
  """x^3 whose gradient treats x as a constant: right values, no second
  derivative through them."""
  @tf.custom_gradient
  def cube(x):
    return x ** 3, lambda g: g * 3.0 * tf.stop_gradient(x) ** 2
  args = [np.array([0.5, 1.5, -1.0])]
  assert tfgrad.check_gradients(lambda x: cube(x), args).ok
  with pytest.raises(tfgrad.GradientCheckError, match="order 2"):
    tfgrad.check_gradients(lambda x: cube(x), args, order=2)


def test_missing_gradient_of_a_dependent_output_is_reported():
  def fn(x):
    return tf.stop_gradient(x) * 2.0
  report = tfgrad.check_gradients(fn, [np.ones(3)], raise_on_failure=False)
  assert report.missing == [(0, 0)] and not report.ok


def test_bad_arguments():
  with pytest.raises(ValueError, match="order"):
    tfgrad.check_gradients(tf.sin, [np.ones(2)], order=3)
  with pytest.raises(ValueError, match="floating"):
    tfgrad.check_gradients(tf.sin, [np.ones(2, np.int32)])


def test_directions_and_variables(wrong_square):
  """Random projections instead of the whole Jacobian, and resource
  variables in place of the placeholders: right rules pass, a wrong one
  fails at the order where it is wrong."""
  x = np.array([[0.5, -1.0, 2.0], [0.3, 0.2, -0.7]])
  w = np.array([[1.0, 0.5], [-0.5, 0.25], [0.1, 2.0]])

  def right(a, b):
    return tf.tanh(a @ b)

  def wrong(a, b):
    return wrong_square(a) @ b

  for variables in (False, True):
    for order in (1, 2):
      report = tfgrad.check_gradients(right, [x, w], order=order,
                                      directions=3, variables=variables)
      assert report.ok and report.checked == 3
    with pytest.raises(tfgrad.GradientCheckError, match="direction 0"):
      tfgrad.check_gradients(wrong, [x, w], directions=1,
                             variables=variables)
