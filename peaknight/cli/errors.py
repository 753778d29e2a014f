"""What an operator's mistake looks like: one line per problem on stderr, exit 2, never a traceback.

Exit codes: 0 ok; 1 a check failed (short, unmet, violation); 2 bad input (config, paths, names).
A closed pipe (`peaknight plan broadcast --explain | head`) is the reader's choice, not an error:
the command ends quietly.
"""
from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

from peaknight.review.crds import CrdsUnavailable
from peaknight.spec import config

OK, CHECK_FAILED, BAD_INPUT = 0, 1, 2


def warn(message: str) -> None:
    """Warnings go to stderr, so stdout stays the command's result (a pipe, a review comment)."""
    print(f"warning: {message}", file=sys.stderr)


def closest(word: str, candidates: Iterable[str]) -> str:
    """The closest candidate, quoted, for a "did you mean"; '' when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"'{close[0]}'" if close else ""


def known_stacks(root: Path | None = None) -> list[str]:
    """Stack names of the project: <stacks_dir>/Pulumi.<name>.yaml."""
    folder = config.stacks_dir(root)
    return sorted(p.name[len("Pulumi."):].rsplit(".", 1)[0] for p in folder.glob("Pulumi.*.y*ml"))


def check_stack_name(stack: str) -> None:
    """A stack given by name must exist; the error lists the names there are."""
    path = config.resolve_stack_path(stack)
    if path.exists() or stack.endswith((".yaml", ".yml")) or "/" in stack:
        return  # a path: the loader reports a missing file as it always has
    names = known_stacks()
    listed = ", ".join(names) if names else f"none in {path.parent}"
    raise config.ConfigError([config.Problem(str(path), "STACK", f"a stack name (one of: {listed}) or a path to "
                                             "a stack file", repr(stack), closest(stack, names))])


def writable_dir(path: Path, option: str) -> None:
    """`path` is a directory, or one this user can create, and can be written: else bad input.
    Checked before any work and without creating anything, so a refused command leaves no trace."""
    if path.exists() and not path.is_dir():
        raise config.ConfigError([config.Problem(str(path), option, "a directory", "a file")])
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise config.ConfigError([config.Problem(str(path), option, "a directory this user may create",
                                                 f"{existing} is a file")])
    if not os.access(existing, os.W_OK | os.X_OK):
        raise config.ConfigError([config.Problem(str(path), option, "a directory this user may write",
                                                 f"{existing} is not writable")])


def writable_file(path: Path, option: str) -> None:
    """`path` can be written: its directory exists and is writable, and it is not a directory."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise config.ConfigError([config.Problem(str(path), option, "a file path", "a directory")])
    if not parent.is_dir():
        raise config.ConfigError([config.Problem(str(path), option, "a file in an existing directory",
                                                 f"no directory {parent}")])
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise config.ConfigError([config.Problem(str(path), option, "a path this user may write", "permission denied")])


def run(body: Callable[[], int]) -> int:
    """Run a command: bad input -> its lines on stderr and 2; a closed stdout -> quiet 0."""
    try:
        code = body()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _silence_stdout()
        return OK
    except (config.ConfigError, CrdsUnavailable) as err:
        for problem in err.problems:   # escaped: a path or variable holding a newline stays one line
            print(config.escaped(str(problem)), file=sys.stderr)
        return BAD_INPUT
    except OSError as err:  # a path the checks above could not foresee (a full disk, a race)
        where = err.filename or "(output)"
        print(config.escaped(f"{where}: expected a path this command can use; found {err.strerror or err}"),
              file=sys.stderr)
        return BAD_INPUT


def _silence_stdout() -> None:
    """After EPIPE Python would complain again flushing stdout at exit: point it at /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
