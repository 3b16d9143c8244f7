"""Packaging for tfgrad. The checkout's top-level `ops/` folder installs as
`tfgrad.ops`, so no bare `ops` module lands in site-packages."""

import os
import re

from setuptools import setup


def _version():
  with open(os.path.join("tfgrad", "__init__.py")) as f:
    return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


# TensorFlow is not a hard requirement: its distributions (tensorflow,
# tensorflow-cpu, tf-nightly, ...) share one import name, so requiring any one
# of them would pull a second TensorFlow in beside the one a user already has.
# `tfgrad` checks for TF >= 2.16 when imported; the extras install one.
_TF_EXTRAS = {
    "tensorflow": ["tensorflow>=2.16"],
    "tensorflow-cpu": ["tensorflow-cpu>=2.16"],
}


setup(
    name="tfgrad",
    version=_version(),
    description="A drop-in, TensorFlow-compatible implementation of tf.gradients",
    long_description=open("README.md").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=["tfgrad", "tfgrad.cli", "tfgrad.ops"],
    package_dir={"tfgrad": "tfgrad", "tfgrad.ops": "ops"},
    python_requires=">=3.9",
    install_requires=["numpy", "absl-py"],
    extras_require={**_TF_EXTRAS, "test": ["pytest", "pytest-xdist"],
                    "plot": ["matplotlib"]},
    entry_points={"console_scripts": [
        "tfgrad-compare = tfgrad.cli.compare:main",
        "tfgrad-bench = tfgrad.cli.bench:main",
        "tfgrad-coverage = tfgrad.cli.coverage:main",
    ]},
    license="Apache-2.0",
)
