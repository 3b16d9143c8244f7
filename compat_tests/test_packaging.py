"""`pip install .` gives tfgrad with its rules as tfgrad.ops, no bare `ops`
module, and no TensorFlow requirement that could double a user's TF."""

import json
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


# ----- The console scripts, from a wheel in a fresh virtualenv -----


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
  """A fresh virtualenv with tfgrad installed from a wheel built from a
  copy of the sources. TensorFlow, numpy and absl come from this
  interpreter's site-packages through a .pth file, so none is reinstalled."""
  source = tmp_path_factory.mktemp("wheel_source")
  for name in ("setup.py", "README.md"):
    shutil.copy(os.path.join(_ROOT, name), source)
  for folder in ("tfgrad", "ops"):
    shutil.copytree(os.path.join(_ROOT, folder), source / folder,
                    ignore=shutil.ignore_patterns("__pycache__"))
  dist = tmp_path_factory.mktemp("dist")
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet",
                  "--no-deps", "--no-build-isolation", "-w", str(dist),
                  str(source)], check=True)
  (wheel,) = dist.glob("tfgrad-*.whl")
  home = tmp_path_factory.mktemp("venv")
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)],
                 check=True)
  python = home / "bin" / "python"
  site = subprocess.run(
      [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
       "['purelib'])"], check=True, capture_output=True, text=True)
  ours = subprocess.run(
      [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()"
       "['purelib'])"], check=True, capture_output=True, text=True)
  with open(os.path.join(site.stdout.strip(), "_base_packages.pth"),
            "w") as f:
    f.write(ours.stdout.strip() + "\n")
  subprocess.run([sys.executable, "-m", "pip", "--python", str(python),
                  "install", "--quiet", "--no-deps", str(wheel)], check=True)
  return home


def _run_in(venv_home, args, cwd):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PATH"] = f"{venv_home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
  return subprocess.run(args, capture_output=True, text=True, cwd=str(cwd),
                        env=env, check=False)


def test_console_scripts_are_on_path(venv, tmp_path):
  for tool in ("compare", "bench", "coverage"):
    assert (venv / "bin" / f"tfgrad-{tool}").exists()
  out = _run_in(venv, ["tfgrad-compare", "--model=mlp", "--depth=2",
                       f"--json={tmp_path}/c.json", "--noprogress"], tmp_path)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "verdict:            all 6 gradients match" in out.stdout
  result = json.loads((tmp_path / "c.json").read_text())
  assert result["ok"] and len(result["rows"]) == 6
  out = _run_in(venv, ["tfgrad-coverage", "--format=json"], tmp_path)
  assert out.returncode == 0, out.stderr[-2000:]
  assert json.loads(out.stdout)["op_types"]


def test_python_m_runs_the_same_tools_from_the_install(venv, tmp_path):
  code = "import tfgrad.cli.compare as m; print(m.__file__)"
  out = _run_in(venv, ["python", "-c", code], tmp_path)
  assert out.stdout.strip().startswith(str(venv))
  for module in ("tfgrad.compare", "tfgrad.bench"):
    out = _run_in(venv, ["python", "-m", module, "--help"], tmp_path)
    assert "--saved_model" in out.stdout, out.stderr[-2000:]
    assert "tfgrad-" + module.split(".")[1] in out.stdout.split("\n\n")[1]
  out = _run_in(venv, ["tfgrad-bench", "--keras=missing.keras"], tmp_path)
  assert out.returncode == 2 and "Traceback" not in out.stderr
  assert "tfgrad-bench: error: --keras: no file 'missing.keras'" in out.stderr
