"""What the command-line tools share: the user-error exit, name suggestions,
the progress bar and the markdown/JSON writers. No flags are defined here
(each tool's `main` defines its own when it runs)."""

import difflib
import json
import sys
import time

from absl import app
from absl import flags
from absl import logging


class UserError(Exception):
  """A mistake in the command line or the user's files: the tools print the
  message as one line and exit with status 2, without a traceback."""


def names_hint(name, names, limit=12):
  """`names` as a short list, close matches of `name` first."""
  names = sorted(set(names))
  close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
  rest = [n for n in names if n not in close]
  shown = close + rest
  more = len(shown) - limit
  text = ", ".join(shown[:limit]) if shown else "(none)"
  return text + (f", ... ({more} more)" if more > 0 else "")


def unknown(kind, name, names):
  return UserError(f"no {kind} {name!r}; {kind}s: {names_hint(name, names)}")


def run_reporting_user_errors(prog, body):
  """Runs `body()`; a UserError becomes one line on stderr and status 2."""
  try:
    return body()
  except UserError as e:
    print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
    return 2


class Progress:
  """A progress bar on stderr for runs longer than a few seconds, plus an
  absl log line per step. Silent (bar-wise) when stderr is not a terminal
  or `enabled` is False."""

  def __init__(self, total, label, enabled=True, stream=None, delay_s=3.0):
    self._total = max(total, 1)
    self._label = label
    self._stream = stream or sys.stderr
    self._enabled = enabled and self._stream.isatty()
    self._start = time.monotonic()
    self._delay_s = delay_s
    self._done = 0
    self._drawn = False

  def step(self, message=""):
    self._done += 1
    logging.vlog(1, "%s %d/%d %s", self._label, self._done, self._total, message)
    if not self._enabled or time.monotonic() - self._start < self._delay_s:
      return
    width = 30
    filled = int(width * self._done / self._total)
    elapsed = time.monotonic() - self._start
    self._stream.write(f"\r{self._label} [{'#' * filled}{'.' * (width - filled)}]"
                       f" {self._done}/{self._total} {elapsed:5.0f}s "
                       f"{message[:40]:<40}")
    self._stream.flush()
    self._drawn = True

  def close(self):
    if self._drawn:
      self._stream.write("\n")
      self._stream.flush()


def markdown_table(header, rows):
  """A GitHub-flavoured markdown table (cells are str()-ed, pipes escaped)."""
  def cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(cell(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def write_text(path, text):
  try:
    with open(path, "w") as f:
      f.write(text)
  except OSError as e:
    raise UserError(f"cannot write {path}: {e.strerror}") from None


def write_json(path, data):
  write_text(path, json.dumps(data, indent=1, default=str) + "\n")


def run_tool(doc, define_flags, run, argv=None):
  """A tool's console entry point: defines its flags (only now, so that
  importing the library defines none), parses argv and runs it; `--help`
  prints `doc` when the entry module has no docstring of its own."""
  entry = sys.modules.get("__main__")
  if entry is not None and not getattr(entry, "__doc__", None):
    entry.__doc__ = doc
  define_flags(flags.FLAGS)
  app.run(lambda argv_: run(flags.FLAGS), argv=argv)
