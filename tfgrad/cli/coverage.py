r"""Coverage of TF's gradient registry by tfgrad's registry, by op family.

    tfgrad-coverage                               # text table per family
    tfgrad-coverage --format=markdown --list_fallback
    tfgrad-coverage --format=json > coverage.json

(`python -m tfgrad.coverage` and, in a checkout, `python tools/coverage.py`
are the same tool.)

Every op type in TF's gradient registry is one of:
  native       tfgrad has a rule for it;
  native-nd    tfgrad declares it NotDifferentiable;
  use-tf       tfgrad declares UseTFGradient: TF's rule, on purpose (also in
               strict mode), e.g. functional control flow;
  fallback     tfgrad has nothing, TF's registry is used (non-strict mode).
The family is the TF module that registered the type (math_grad.py ->
math). Types tfgrad knows but TF does not are listed after the table.
"""

import collections
import json
import os
import re

from absl import flags
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops

import tfgrad
from tfgrad import registry
from tfgrad.cli import common



def define_flags(fv):
  """Adds the tool's flags to `fv` (called by `main`)."""
  flags.DEFINE_enum("format", "text", ["text", "markdown", "json"],
                    "Output format.", flag_values=fv)
  flags.DEFINE_bool("list_fallback", False,
                    "Also list the op types that fall back to TF, per "
                    "family.", flag_values=fv)
  flags.DEFINE_bool("list_native", False,
                    "Also list the op types with a tfgrad entry, per "
                    "family.", flag_values=fv)

# Module stems that belong to a bigger family.
_FAMILY_ALIASES = {
    "nn_fused_batch_norm": "nn",
    "cudnn_rnn": "nn",
    "rnn": "nn",
    "ctc": "nn",
    "cond_v2": "control_flow",
    "while_v2": "control_flow",
    "sparse_csr_matrix": "sparse",
    "fft": "signal",
    "special_math": "math",
    "clip": "math",
    "manip": "array",
    "resource_variable": "state",
    "tensor_array": "data_flow",
    "image_ops": "image",
    "check": "array",
    "api": "dtensor",
    "debug_gradients": "debug",
    "dumping_callback": "debug",
    "audio_microfrontend_op": "audio",
}
# Files that mention NotDifferentiable only to define or document it.
_REGISTRY_MODULES = ("tensorflow.python.framework.ops",
                     "tensorflow.python.framework.registry")
_NOT_DIFFERENTIABLE_CALL = re.compile(
    r"(?:NotDifferentiable|NoGradient|no_gradient)\(\s*[\"'](\w+)[\"']")
_NOT_DIFFERENTIABLE_ANY = re.compile(r"(?:NotDifferentiable|NoGradient|"
                                     r"no_gradient)\(")


def _family_of_module(module):
  """'tensorflow.python.ops.math_grad' -> 'math'."""
  stem, previous = module.rsplit(".", 1)[-1], None
  while stem != previous:
    previous = stem
    for suffix in ("_grad", "_ops", "_impl"):
      if stem.endswith(suffix):
        stem = stem[:-len(suffix)]
  if stem.startswith("ragged_"):
    return "ragged"
  return _FAMILY_ALIASES.get(stem, stem)


def _tf_sources_declaring_not_differentiable():
  """{path: text} of TF's Python files that declare types not
  differentiable."""
  root = os.path.dirname(os.path.abspath(tf.__file__))
  sources = {}
  for folder, _, files in os.walk(root):
    for name in files:
      if not name.endswith(".py") or name.endswith("_test.py"):
        continue
      path = os.path.join(folder, name)
      try:
        with open(path, encoding="utf-8", errors="replace") as f:
          text = f.read()
      except OSError:
        continue
      if (_NOT_DIFFERENTIABLE_ANY.search(text) and
          _module_of_path(root, path) not in _REGISTRY_MODULES):
        sources[path] = text
  return root, sources


def _module_of_path(root, path):
  rel = os.path.relpath(path, os.path.dirname(root))
  return rel[:-len(".py")].replace(os.sep, ".")


def tf_families():
  """{op type: family} for TF's gradient registry.

  A registered rule names its module directly. TF's registry keeps no
  usable location for types declared not differentiable (the stored frame
  is the registry's own), so those are found in TF's sources: a literal
  `NotDifferentiable("Type")`, else a file that declares types not
  differentiable and spells the type as a string literal.
  """
  entries = tf_ops.gradient_registry._registry  # pylint: disable=protected-access
  families, unresolved = {}, []
  for op_type, entry in entries.items():
    rule = entry["type"]
    if rule is not None and getattr(rule, "__module__", None):
      families[op_type] = _family_of_module(rule.__module__)
    else:
      unresolved.append(op_type)
  if not unresolved:
    return families
  root, sources = _tf_sources_declaring_not_differentiable()
  literal = {}
  for path, text in sorted(sources.items()):
    for match in _NOT_DIFFERENTIABLE_CALL.finditer(text):
      literal.setdefault(match.group(1), path)
  for op_type in unresolved:
    path = literal.get(op_type)
    if path is None:
      quoted = re.compile(r"[\"']%s[\"']" % re.escape(op_type))
      path = next((p for p, text in sorted(sources.items())
                   if quoted.search(text)), None)
    families[op_type] = (_family_of_module(_module_of_path(root, path))
                         if path else "unknown")
  return families


def _tfgrad_family(op_type):
  origin = registry.GRADIENTS.origin(op_type)
  return _family_of_module(os.path.basename(origin.split(":")[0])[:-3]
                           if ".py" in origin else origin)


def _relative(origin):
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  return os.path.relpath(origin, root) if origin.startswith(root) else origin


# ----- Classification -----


def _status(ours, op_type):
  rule = ours.get(op_type)
  if rule is registry.USE_TF_GRADIENT:
    return "use-tf"
  return "native" if rule is not None else "native-nd"


def classify():
  """Returns the coverage report as a dict (the json format)."""
  tf_types = sorted(tf_ops.gradient_registry.list())
  families = tf_families()
  ours = registry.GRADIENTS
  rows = {}
  for op_type in tf_types:
    tf_nd = tf_ops.gradient_registry.lookup(op_type) is None
    status = _status(ours, op_type) if op_type in ours else "fallback"
    rows[op_type] = {"family": families[op_type], "status": status,
                     "tf_not_differentiable": tf_nd}
  per_family = collections.defaultdict(collections.Counter)
  for row in rows.values():
    per_family[row["family"]][row["status"]] += 1
    per_family[row["family"]]["total"] += 1
    if row["status"] == "fallback" and row["tf_not_differentiable"]:
      per_family[row["family"]]["fallback_tf_nd"] += 1
  disagreements = [
      t for t, r in rows.items()
      if (r["status"] == "native-nd") != r["tf_not_differentiable"]
      and r["status"] != "fallback"]
  tfgrad_only = [{"op_type": t, "status": _status(ours, t),
                  "family": _tfgrad_family(t),
                  "origin": _relative(ours.origin(t))}
                 for t in ours.keys() if t not in rows]
  return {"tf_version": tf.__version__, "tfgrad_version": tfgrad.__version__,
          "op_types": rows,
          "families": {f: dict(c) for f, c in sorted(per_family.items())},
          "disagreements": sorted(disagreements),
          "tfgrad_only": tfgrad_only}


# ----- Output -----

_COLUMNS = ("native", "native-nd", "use-tf", "fallback", "total", "covered")


def _family_rows(report):
  rows = []
  for family, counts in sorted(report["families"].items(),
                               key=lambda kv: (-kv[1]["total"], kv[0])):
    rows.append((family, counts))
  totals = collections.Counter()
  for _, counts in rows:
    totals.update(counts)
  return rows, totals


def _cells(counts):
  native, nd = counts.get("native", 0), counts.get("native-nd", 0)
  fallback, total = counts.get("fallback", 0), counts["total"]
  tf_nd = counts.get("fallback_tf_nd", 0)
  fb = f"{fallback} ({tf_nd} nd)" if tf_nd else str(fallback)
  return [str(native), str(nd), str(counts.get("use-tf", 0)), fb, str(total),
          f"{100.0 * (native + nd) / total:.1f}%"]


def _percent(part, whole):
  return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def _render(report, markdown, opts):
  rows, totals = _family_rows(report)
  header = ["family", *_COLUMNS]
  body = [[family, *_cells(counts)] for family, counts in rows]
  footer = ["TOTAL", *_cells(totals)]
  out = []
  if markdown:
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * len(_COLUMNS)) + "|")
    out.extend("| " + " | ".join(r) + " |" for r in body)
    out.append("| " + " | ".join(f"**{c}**" for c in footer) + " |")
  else:
    widths = [max(len(r[i]) for r in [header, footer, *body])
              for i in range(len(header))]

    def line(r):
      return "  ".join([r[0].ljust(widths[0])] +
                       [c.rjust(w) for c, w in zip(r[1:], widths[1:])])
    out.append(line(header))
    out.append("-" * len(out[0]))
    out.extend(line(r) for r in body)
    out.append("-" * len(out[0]))
    out.append(line(footer))
  total = totals["total"]
  native, nd = totals.get("native", 0), totals.get("native-nd", 0)
  fallback = totals.get("fallback", 0)
  use_tf = totals.get("use-tf", 0)
  out.append("")
  out.append(f"TF {report['tf_version']}, tfgrad {report['tfgrad_version']}: "
             f"{total} op types in TF's gradient registry; native rule "
             f"{native} ({_percent(native, total)}), native NotDifferentiable "
             f"{nd} ({_percent(nd, total)}), TF's rule on purpose (use-tf) "
             f"{use_tf} ({_percent(use_tf, total)}), fallback to TF {fallback} "
             f"({_percent(fallback, total)}, of which "
             f"{totals.get('fallback_tf_nd', 0)} are NotDifferentiable in "
             "TF).")
  bullet = "- " if markdown else "  "
  if report["disagreements"]:
    out.append("")
    out.append("NotDifferentiable in one registry, a rule in the other "
               "(TF's may be a rule returning None): "
               + ", ".join(report["disagreements"]))
  if report["tfgrad_only"]:
    out.append("")
    out.append(f"tfgrad types TF's registry lacks "
               f"({len(report['tfgrad_only'])}):")
    out.extend(f"{bullet}{r['op_type']} ({r['status']}, {r['origin']})"
               for r in report["tfgrad_only"])
  for flag, statuses, title in (
      (opts.list_native, ("native", "native-nd"), "with a tfgrad entry"),
      (True, ("use-tf",), "using TF's rule on purpose (UseTFGradient)"),
      (opts.list_fallback, ("fallback",), "falling back to TF")):
    if not flag:
      continue
    out.append("")
    out.append(f"Op types {title}, by family:")
    for family, _ in rows:
      types = [t for t, r in report["op_types"].items()
               if r["family"] == family and r["status"] in statuses]
      if types:
        out.append(f"{bullet}{family} ({len(types)}): " + ", ".join(
            t + ("*" if report["op_types"][t]["tf_not_differentiable"]
                 else "") for t in types))
    if "fallback" in statuses:
      out.append("(* = NotDifferentiable in TF)")
  return "\n".join(out)


def run(opts):
  """Prints the coverage report for parsed flags `opts`; returns 0."""
  report = classify()
  if opts.format == "json":
    print(json.dumps(report, indent=1, sort_keys=True))
  else:
    print(_render(report, markdown=opts.format == "markdown", opts=opts))
  return 0


def main(argv=None):
  """Console entry point: defines the flags, parses argv, runs."""
  common.run_tool(__doc__, define_flags, run, argv)


if __name__ == "__main__":
  main()
