"""`pip install .` gives tfgrad with its rules as tfgrad.ops, no bare `ops`
module, and no TensorFlow requirement that could double a user's TF."""

import os
import shutil
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """The package as pip installs it from a copy of the sources (so the
  build writes nothing into the checkout)."""
  source = tmp_path_factory.mktemp("source")
  for name in ("setup.py", "README.md"):
    shutil.copy(os.path.join(_ROOT, name), source)
  for folder in ("tfgrad", "ops"):
    shutil.copytree(os.path.join(_ROOT, folder), source / folder,
                    ignore=shutil.ignore_patterns("__pycache__"))
  target = tmp_path_factory.mktemp("site")
  subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                  "--no-deps", "--no-build-isolation", "--target",
                  str(target), str(source)], check=True)
  return target


def test_rules_install_inside_the_package(installed):
  assert (installed / "tfgrad" / "ops" / "math_grad.py").exists()
  assert not (installed / "ops").exists()


def test_installed_package_imports_its_own_rules(installed):
  code = ("import sys, tfgrad; "
          "print(sys.modules['tfgrad.ops'].__file__); "
          "print('ops' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], check=True,
                       capture_output=True, text=True, cwd=str(installed),
                       env={**os.environ, "PYTHONPATH": str(installed)})
  ops_file, bare_ops = out.stdout.split()
  assert ops_file.startswith(str(installed))
  assert bare_ops == "False"


def test_tensorflow_is_only_an_extra(installed):
  (meta,) = installed.glob("tfgrad-*.dist-info")
  requires = [line.split(":", 1)[1].strip()
              for line in (meta / "METADATA").read_text().splitlines()
              if line.startswith("Requires-Dist:")]
  tf_requirements = [r for r in requires if r.startswith("tensorflow")]
  assert tf_requirements and all("extra ==" in r for r in tf_requirements)
