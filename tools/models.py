"""The built-in models of the tools, which live in `tfgrad/cli/models.py`
(so the installed bench has them too)."""

from tfgrad.cli.models import *  # pylint: disable=wildcard-import,unused-wildcard-import
from tfgrad.cli.models import BUILDERS
from tfgrad.cli.models import build
