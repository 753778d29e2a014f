"""The upstream CRDs the kit validates against: pinned in crds.lock.yaml, obtained verified.

Where they come from, first match wins: `PEAKNIGHT_CRDS=DIR` (a local mirror, e.g. for a machine
without internet), else the cache `.cache/crds/` of the project checkout, filled by `peaknight
crds fetch`. Every file is checked against its pinned sha256 wherever it comes from, so a
validation always means "against these exact upstream files". Nothing outside the checkout is
assumed to exist.
"""
from __future__ import annotations

import errno
import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from peaknight.spec import files as input_files
from peaknight.spec.config import project_root

LOCK = Path(__file__).with_name("crds.lock.yaml")
ENV = "PEAKNIGHT_CRDS"
FETCH_TIMEOUT_SECONDS = 30
# The largest pinned CRD is 1.4 MB (Envoy Gateway's EnvoyProxy): a mirror's file is read no further.
MAX_CRD_BYTES = 16 << 20
# The one line an operator (or `make test`) gets when no verified CRDs can be had.
HOW_TO = (f"the pinned CRDs are not available{{why}}: run `peaknight crds fetch` with internet access, or set "
          f"{ENV}=DIR to a directory holding the files of peaknight/review/crds.lock.yaml")


@dataclass(frozen=True)
class Pin:
    """One pinned CRD file: where it comes from and what its bytes must hash to."""

    file: str
    source: str
    revision: str
    sha256: str
    addon: str | None = None
    chart: str | None = None
    # `strip-helm-guards`: upstream ships the file inside a Helm chart's templates, between
    # `{{- if ... }}` / `{{- end }}` lines; the pinned CRD (and its sha256) is the file without them.
    transform: str | None = None
    # Set on a pin the offline mirror may lack: its kinds (`group/Kind`, comma-separated) are then
    # reported as not validated, by name, instead of failing every validation.
    mirror_optional: str | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in (self.mirror_optional or "").split(",") if k.strip())


class CrdsUnavailable(Exception):
    """No verified copy of the pinned CRDs: carries the problems, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@cache
def pins() -> tuple[Pin, ...]:
    doc = yaml.safe_load(LOCK.read_text())
    return tuple(Pin(**{k: str(v) for k, v in row.items()}) for row in doc["crds"])


def cache_dir() -> Path:
    """Inside the checkout (gitignored), so a clone needs nothing beside it."""
    return project_root() / ".cache" / "crds"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _transformed(pin: Pin, data: bytes) -> bytes:
    if pin.transform == "strip-helm-guards":
        return b"".join(line for line in data.splitlines(keepends=True) if not line.lstrip().startswith(b"{{"))
    return data


def missing_optional(directory: Path) -> tuple[Pin, ...]:
    """Pins a mirror may lack that `directory` does lack."""
    return tuple(pin for pin in pins() if pin.mirror_optional and not (directory / pin.file).is_file())


def check(directory: Path) -> list[str]:
    """Problems with `directory` as a copy of the pinned CRDs (empty when every file verifies)."""
    problems = []
    for pin in pins():
        path = directory / pin.file
        if not path.exists():
            if not pin.mirror_optional:
                problems.append(f"{path}: expected the pinned CRD ({pin.source}); found no such file")
            continue
        try:
            digest = _digest(input_files.read_bounded(path, MAX_CRD_BYTES))
        except input_files.Refused as err:
            problems.append(f"{path}: expected {err.describe('the pinned CRD')}; found {err.found}")
            continue
        if digest != pin.sha256:
            problems.append(f"{path}: expected sha256 {pin.sha256} (crds.lock.yaml); found {digest}")
    return problems


@cache
def _verified(directory: Path) -> tuple[Path, ...]:
    problems = check(directory)
    if problems:
        raise CrdsUnavailable(problems)
    return tuple(directory / pin.file for pin in pins() if (directory / pin.file).is_file())


def directory() -> Path:
    """Where the pinned CRDs are read from: $PEAKNIGHT_CRDS whenever it is set (an empty value is a
    mistake to report, never a reason to download), else the checkout's cache."""
    if ENV not in os.environ:
        return cache_dir()
    mirror = os.environ[ENV]
    if not mirror:
        raise CrdsUnavailable([f"{ENV}: expected a directory of CRD files (or the variable unset); found an empty "
                               "value"])
    try:
        return Path(mirror).resolve(strict=True)
    except FileNotFoundError:
        reason = "no such directory"
    except RuntimeError:                       # a symlink loop (Python before 3.13)
        reason = "a symlink loop"
    except OSError as err:
        reason = "a symlink loop" if err.errno == errno.ELOOP else (err.strerror or str(err))
    raise CrdsUnavailable([f"{mirror}: {ENV}: expected a directory of CRD files; found {reason}"])


def unvalidated_kinds() -> tuple[str, ...]:
    """`group/Kind`s whose pinned CRD the CRD directory lacks (a mirror without an optional pin)."""
    return tuple(kind for pin in missing_optional(directory()) for kind in pin.kinds)


def files() -> tuple[Path, ...]:
    """The pinned CRD files, verified: from $PEAKNIGHT_CRDS if set, else the checkout's cache.
    Raises CrdsUnavailable naming what is wrong and, for an empty cache, what to do."""
    where = directory()
    if ENV in os.environ:
        if not where.is_dir():
            raise CrdsUnavailable([f"{os.environ[ENV]}: {ENV}: expected a directory of CRD files; found a file"])
    elif not all((where / pin.file).is_file() for pin in pins() if not pin.mirror_optional):
        raise CrdsUnavailable([HOW_TO.format(why=f" (none in {where})")])
    return _verified(where)


def fetch(timeout: float = FETCH_TIMEOUT_SECONDS) -> tuple[Path, list[str]]:
    """Fill the cache from each pin's source (or verify $PEAKNIGHT_CRDS when set): (directory,
    files downloaded). A file already cached and verified is not downloaded again; a download
    whose hash differs is not kept. Raises CrdsUnavailable on the first failure."""
    if ENV in os.environ:
        return files()[0].parent, []
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    got = []
    for pin in pins():
        path = directory / pin.file
        if path.is_file() and _digest(path.read_bytes()) == pin.sha256:
            continue
        try:
            with urllib.request.urlopen(pin.source, timeout=timeout) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise CrdsUnavailable([HOW_TO.format(why=f" (downloading {pin.file}: {reason})")]) from None
        data = _transformed(pin, data)
        if (digest := _digest(data)) != pin.sha256:
            raise CrdsUnavailable([f"{pin.source}: expected sha256 {pin.sha256} (crds.lock.yaml); found {digest}"])
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        got.append(pin.file)
    _verified.cache_clear()
    return directory, got
