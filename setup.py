"""Packaging for tfgrad. The checkout's top-level `ops/` folder installs as
`tfgrad.ops`, so no bare `ops` module lands in site-packages."""

import os
import re

from setuptools import setup


def _version():
  with open(os.path.join("tfgrad", "__init__.py")) as f:
    return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


def _tensorflow_requirement():
  """`tensorflow>=2.16`, unless a TF distribution is already installed: then
  nothing, so a user of tensorflow-cpu or tf-nightly does not get a second
  TensorFlow pulled in (they share the import name)."""
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly", "tf-nightly-cpu",
               "tensorflow-macos", "tensorflow-intel", "tensorflow-aarch64"):
    try:
      metadata.version(dist)
      return []
    except metadata.PackageNotFoundError:
      continue
  return ["tensorflow>=2.16"]


setup(
    name="tfgrad",
    version=_version(),
    description="A drop-in, TensorFlow-compatible implementation of tf.gradients",
    long_description=open("README.md").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=["tfgrad", "tfgrad.ops"],
    package_dir={"tfgrad": "tfgrad", "tfgrad.ops": "ops"},
    python_requires=">=3.9",
    install_requires=_tensorflow_requirement() + ["numpy", "absl-py"],
    extras_require={"test": ["pytest", "pytest-xdist"]},
    license="Apache-2.0",
)
