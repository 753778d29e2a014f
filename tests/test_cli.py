"""The operator's side of the CLI: no traceback for anything an operator does. Closed pipes end
quietly, bad paths and names are exit 2 naming them, warnings go to stderr, --version, "did you
mean" for commands, and render owns its output directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from peaknight.cli import main as cli
from peaknight.cli import render
from peaknight.spec import config
import nights
from conftest import STACKS

EXE = str(Path(sys.executable).parent / "peaknight")


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def closed_pipe(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the console script with its stdout's reader already gone (`... | head` that has
    finished), so its first write meets a closed pipe."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([EXE, *argv], stdout=write, stderr=subprocess.PIPE, text=True, cwd=cwd, timeout=600)
    finally:
        os.close(write)


@pytest.mark.realtool  # the installed kit run as its own process
def test_a_closed_pipe_ends_quietly() -> None:
    result = closed_pipe("plan", "broadcast", "--explain")
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.realtool  # the installed kit run as its own process
def test_version() -> None:
    result = subprocess.run([EXE, "--version"], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (0, f"peaknight {metadata.version('peaknight')}\n")


def test_a_misspelt_command_gets_did_you_mean(capsys: pytest.CaptureFixture) -> None:
    code, out, err = _run(capsys, "rendr", "broadcast")
    assert (code, out) == (2, "")
    assert err == ("peaknight: unknown command 'rendr' (did you mean 'render'?); commands: render, plan, validate, "
                   "diff, simulate, crds, calibrate\n")


def test_an_unknown_stack_name_lists_the_stacks(capsys: pytest.CaptureFixture) -> None:
    code, out, err = _run(capsys, "plan", "broadcst")
    assert (code, out) == (2, "")
    assert err == (f"{STACKS / 'Pulumi.broadcst.yaml'}: STACK: expected a stack name (one of: broadcast, gala-vke, rehearsal) "
                   "or a path to a stack file; found 'broadcst' (did you mean 'broadcast'?)\n")


def test_stack_names_resolve_in_the_folder_peaknight_stacks_names(capsys, tmp_path, monkeypatch) -> None:
    """A team keeps its stacks elsewhere: PEAKNIGHT_STACKS=DIR makes `plan NAME` read DIR/Pulumi.NAME.yaml,
    and an unknown name lists DIR's stacks."""
    shutil.copy(STACKS / "Pulumi.rehearsal.yaml", tmp_path / "Pulumi.dress.yaml")
    monkeypatch.setenv(config.STACKS_ENV, str(tmp_path))
    assert _run(capsys, "plan", "dress")[0] == 0
    code, _, err = _run(capsys, "plan", "rehearsal")
    assert (code, err) == (2, f"{tmp_path / 'Pulumi.rehearsal.yaml'}: STACK: expected a stack name (one of: dress) "
                              "or a path to a stack file; found 'rehearsal'\n")


def test_a_plot_into_a_missing_directory_is_bad_input(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "dir" / "x.png"
    code, out, err = _run(capsys, "simulate", "rehearsal", "--plot", str(target))
    assert (code, out) == (2, "")  # refused before the night is replayed: nothing printed as if done
    assert err == f"{target}: --plot: expected a file in an existing directory; found no directory {target.parent}\n"


@pytest.mark.parametrize("make", ["file", "under-a-file", "unwritable"])
def test_render_into_a_path_it_cannot_use_is_bad_input(make: str, capsys: pytest.CaptureFixture,
                                                        tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    if make == "file":
        out_dir, expected = tmp_path / "f", "expected a directory; found a file"
    elif make == "under-a-file":
        out_dir, expected = tmp_path / "f" / "out", f"expected a directory this user may create; found {tmp_path / 'f'} is a file"
    elif os.geteuid() == 0:  # root passes the permission check into /proc; the write itself fails
        out_dir, expected = Path("/proc/peaknight-out"), "expected a directory this user may write; found No such file or directory"
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        out_dir, expected = tmp_path / "ro" / "out", f"expected a directory this user may write; found {tmp_path / 'ro'} is not writable"
    code, out, err = _run(capsys, "render", "rehearsal", "--out", str(out_dir))
    assert (code, out) == (2, "")
    assert err == f"{out_dir}: --out: {expected}\n"
    assert (tmp_path / "f").read_text() == "x"


def test_warnings_go_to_stderr(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, out, err = _run(capsys, "render", str(nights.per_shape("broadcast")), "--out", str(tmp_path))
    assert code == 0
    assert "warning:" not in out
    assert err and all(line.startswith("warning: ") for line in err.splitlines())


def _without_last_cluster(tmp_path: Path) -> tuple[Path, str]:
    doc = yaml.safe_load((STACKS / "Pulumi.rehearsal.yaml").read_text())
    clusters = doc["config"]["peaknight:clusters"]
    gone = clusters.pop()["name"]
    for c in clusters:
        c["share"] = 1 / len(clusters)
    path = tmp_path / "Pulumi.smaller.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, gone


def test_render_removes_clusters_no_longer_in_the_stack(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    assert _run(capsys, "render", "rehearsal", "--out", str(out_dir))[0] == 0
    smaller, gone = _without_last_cluster(tmp_path)
    assert (out_dir / gone).is_dir()
    code, out, _ = _run(capsys, "render", str(smaller), "--out", str(out_dir))
    assert code == 0
    assert f"  {gone}: removed (no longer in the stack)" in out.splitlines()
    assert not (out_dir / gone).exists()
    assert sorted(p.name for p in out_dir.iterdir() if p.is_dir()) == sorted(
        c["name"] for c in yaml.safe_load(smaller.read_text())["config"]["peaknight:clusters"])
    # a third render of the same stack removes nothing
    code, out, _ = _run(capsys, "render", str(smaller), "--out", str(out_dir))
    assert code == 0 and "removed" not in out


def test_render_refuses_a_directory_it_did_not_write(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "reh-bj-01").mkdir()
    code, out, err = _run(capsys, "render", "rehearsal", "--out", str(tmp_path))
    assert (code, out) == (2, "")
    assert err == (f"{tmp_path}: --out: expected an empty directory or one `peaknight render` wrote; found other "
                   f"content and no {render.MARKER}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "reh-bj-01"]
