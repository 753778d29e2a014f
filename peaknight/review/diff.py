"""`peaknight diff STACK --base GITREF`: what a change to a stack does, for code review.

Both sides are rendered by the installed kit's own code: the base from the stack file (and the
calibration file beside it) as they are at GITREF, read out of git as data (`git cat-file`, which
runs no hooks, filters or textconv), the head from the working tree. No code of the repository
holding STACK is imported or run: that repository may be a vendor's or a pull request's checkout,
and diffing a stack must not hand it the reviewer's machine (README, "Security"). The cost is that a
change to the kit's code alone shows nothing here: review it as code, or diff the two renders
(`peaknight render` from each checkout you trust).

The output is for a reviewer's first screen: the summary first (per model: capacity, forecast,
replicas, GPUs, nodes, pre-scales and the simulated night, base -> head; unchanged models on one
line), then per object the fields added / removed / changed. A change made the same way in many
clusters is printed once with the clusters named, the cluster's own name in it standing for each
(`<cluster>`); list items are matched by their name (`name`, or a rule's `alert` / `record`), so a
moved alert is not shown as deleted and re-added.
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

from peaknight.plan.capacity import EnvelopeError
from peaknight.plan import cost
from peaknight.plan.cost import usd
from peaknight.plan.report import EVERYTHING, Selection, duration, si
from peaknight.plan.units import RATE_UNIT
from peaknight.review import replace, snapshot
from peaknight.spec import profiles
from peaknight.spec.config import MAX_BYTES, ConfigError, Problem, resolve_stack_path

MAX_VALUE = 100  # characters of a value shown in a change line


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=120)


def locate(stack: str) -> tuple[Path, str]:
    """(repository top level, stack file path inside it): the stack file decides the repository."""
    path = resolve_stack_path(stack).resolve()
    top = _git(path.parent if path.parent.exists() else Path.cwd(), "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ConfigError([Problem(str(path), "(file)", "a stack file inside a git repository", "no repository")])
    root = Path(top.stdout.decode().strip())
    return root, str(path.relative_to(root))


def take(stack: Path, side: str, shown: str) -> dict[str, Any]:
    """The snapshot of one side; its stack's problems are bad input, each line naming the side
    and the file as the reviewer knows it (`shown`)."""
    def named(line: str) -> str:
        return line.replace(str(stack), shown)
    try:
        return snapshot.snapshot(stack)
    except ConfigError as err:
        raise ConfigError([Problem(side, "(stack)", "a stack that loads",
                                   named(str(p))) for p in err.problems]) from None
    except EnvelopeError as err:
        raise ConfigError([Problem(side, "(stack)", "a stack that loads", named(line)) for line in err.problems]) from None


def _blob(root: Path, sha: str, rel: str) -> bytes | None:
    """A file as it is at `sha`, read as data (at most a stack file's bound); None when absent."""
    size = _git(root, "cat-file", "-s", f"{sha}:{rel}")
    if size.returncode != 0:
        return None
    if int(size.stdout.decode().strip() or 0) > MAX_BYTES:
        raise ConfigError([Problem(f"{sha[:12]}:{rel}", "(file)", f"a file of at most {MAX_BYTES:,} bytes", "more")])
    return _git(root, "cat-file", "blob", f"{sha}:{rel}").stdout


def base_snapshot(root: Path, stack_rel: str, ref: str) -> dict[str, Any] | None:
    """The base revision's snapshot, by this kit's code; None when the stack file did not exist
    there (all added)."""
    commit = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if commit.returncode != 0:
        raise ConfigError([Problem(str(root), "--base", "a git revision of this repository", repr(ref))])
    sha = commit.stdout.decode().strip()
    stack = _blob(root, sha, stack_rel)
    if stack is None:
        return None
    rel = Path(stack_rel)
    calibration = _blob(root, sha, str(rel.parent / profiles.CALIBRATION_FILE))
    with tempfile.TemporaryDirectory(prefix="peaknight-base-") as tmp:
        (Path(tmp) / rel.name).write_bytes(stack)
        if calibration is not None:
            (Path(tmp) / profiles.CALIBRATION_FILE).write_bytes(calibration)
        return take(Path(tmp) / rel.name, f"base {ref} ({sha[:12]})", f"{sha[:12]}:{stack_rel}")


# ---- semantic diff of two objects -------------------------------------------------------------

def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"


def _show_pair(old: Any, new: Any) -> str:
    """`old -> new`; two long strings are shown from a little before where they first differ."""
    if isinstance(old, str) and isinstance(new, str) and max(len(old), len(new)) > MAX_VALUE:
        start = max(0, next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new))) - 20)
        if start:
            return f"{_show('…' + old[start:])} -> {_show('…' + new[start:])}"
    return f"{_show(old)} -> {_show(new)}"


# What names a list item: containers, env, ports, volumes, triggers, rule groups by `name`;
# Prometheus rules by `alert` or `record`.
ITEM_KEYS = ("name", "alert", "record")


def _item_key(item: Any) -> str | None:
    if isinstance(item, dict):
        return next((str(item[k]) for k in ITEM_KEYS if k in item), None)
    return None


def item_keys(items: list[Any]) -> list[str] | None:
    """A unique name per item, or None when the list cannot be compared by name. Items that share
    a name (one alert per node pool) are told apart as Prometheus does, by the labels whose values
    differ between them: `PeaknightNodePoolAtGpuLimit{nodepool=h200}`."""
    found = [_item_key(i) for i in items]
    if not items or None in found:
        return None
    keys = [str(k) for k in found]
    for name in {k for k in keys if keys.count(k) > 1}:
        same = [i for i, k in enumerate(keys) if k == name]
        labels = [items[i].get("labels") or {} for i in same]
        differing = sorted({k for lab in labels for k in lab if len({str(x.get(k)) for x in labels}) > 1})
        for i, lab in zip(same, labels):
            keys[i] = f"{name}{{{','.join(f'{k}={lab.get(k)}' for k in differing)}}}"
    return keys if len(set(keys)) == len(keys) else None


def changes(old: Any, new: Any, path: str = "") -> Iterator[str]:
    """One line per leaf that differs. Lists of named items (containers, env, ports, triggers,
    rules by alert/record) are matched by name, so inserting or moving one does not show every
    later one as changed."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                yield f"+ {sub}: {_show(new[key])}"
            elif key not in new:
                yield f"- {sub}: {_show(old[key])}"
            else:
                yield from changes(old[key], new[key], sub)
    elif isinstance(old, list) and isinstance(new, list) and (old_keys := item_keys(old)) and (
            new_keys := item_keys(new)):
        before, after = dict(zip(old_keys, old)), dict(zip(new_keys, new))
        for name in [*before, *(n for n in after if n not in before)]:
            sub = f"{path}[{name}]"
            if name not in after:
                yield f"- {sub}: {_show(before[name])}"
            elif name not in before:
                yield f"+ {sub}: {_show(after[name])}"
            else:
                yield from changes(before[name], after[name], sub)
    elif isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            if i >= len(old):
                yield f"+ {path}[{i}]: {_show(new[i])}"
            elif i >= len(new):
                yield f"- {path}[{i}]: {_show(old[i])}"
            else:
                yield from changes(old[i], new[i], f"{path}[{i}]")
    elif old != new:
        yield f"~ {path}: {_show_pair(old, new)}"


def _title(key: str, manifest: dict[str, Any]) -> str:
    meta = manifest.get("metadata", {})
    where = f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else meta.get("name", key)
    return f"{manifest.get('kind', '?')} {where}"


def _clusters(names: list[str], total: int) -> str:
    if len(names) == total and total > 1:
        return f"all {total} clusters"
    return ", ".join(names) if len(names) <= 4 else f"{len(names)} clusters ({names[0]} … {names[-1]})"


def _generic(lines: Iterator[str], cluster: str) -> tuple[str, ...]:
    """The change lines with the cluster's own name as `<cluster>`, so a rule whose text names its
    cluster groups with the same change in every other cluster."""
    pattern = re.compile(rf"(?<![\w-]){re.escape(cluster)}(?![\w-])")
    return tuple(pattern.sub(CLUSTER, line) for line in lines)


CLUSTER = "<cluster>"


def named_after(name: str, models: frozenset[str] | None) -> bool:
    """Whether an object or workload name is one of the models' (`chat`, `chat-decode`,
    `stage-chat-z0`, `rules-chat`: the model's name between dashes); every name without a filter."""
    return models is None or any(re.search(rf"(^|-){re.escape(m)}(-|$)", name) for m in models)


Rollouts = dict[str, dict[str, dict[str, Any]]]   # cluster -> workload -> {replicas, surge, rollout_s}


def rollout(manifest: dict[str, Any], clusters: list[str], rollouts: Rollouts) -> dict[str, Any]:
    """What rolling `manifest`'s pods in `clusters` takes: the plan's peak replicas and rollout time
    for a model's workload (the longest cluster's); a workload the plan does not size rolls the
    replicas its manifest sets (None: the autoscaler's or one pod a node), with no time."""
    name = str(manifest.get("metadata", {}).get("name"))
    planned = [rollouts.get(c, {}).get(name) for c in clusters]
    if all(planned):
        return {"replicas": sum(p["replicas"] for p in planned if p), "clusters": len(clusters),
                "seconds": max(p["rollout_s"] for p in planned if p), "surge": max(p["surge"] for p in planned if p)}
    each = manifest.get("spec", {}).get("replicas")
    return {"replicas": each * len(clusters) if isinstance(each, int) else None, "clusters": len(clusters),
            "seconds": None, "surge": None}


def object_changes(base: dict[str, Any], head: dict[str, Any], selection: Selection = EVERYTHING,
                   rollouts: Rollouts | None = None) -> list[dict[str, Any]]:
    """Added / removed / changed objects of the selected clusters (and models), each identical change
    once with the clusters it is made in: {change: + - ~, object, clusters, lines}; a changed one
    also says which of its fields make Pulumi replace it (`replaced_by`, replace.py) and, when it
    rolls its pods, what that takes per the head's plan (`rollout`, else None)."""
    grouped: dict[tuple[str, str, tuple[str, ...]], list[str]] = defaultdict(list)
    manifests: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = {}
    for cluster in sorted(c for c in set(base) | set(head) if selection.cluster(c)):
        old, new = base.get(cluster, {}), head.get(cluster, {})
        for key in sorted(set(old) | set(new)):
            manifest = new.get(key, old.get(key, {}))
            if not named_after(str(manifest.get("metadata", {}).get("name", key)), selection.models):
                continue
            if key not in old:
                grouped[("+", _title(key, new[key]), ())].append(cluster)
            elif key not in new:
                grouped[("-", _title(key, old[key]), ())].append(cluster)
            else:
                lines = _generic(changes(old[key], new[key]), cluster)
                if lines:
                    grouped[("~", _title(key, new[key]), lines)].append(cluster)
                    manifests[("~", _title(key, new[key]), lines)] = new[key]
    found = []
    for (mark, title, lines), names in sorted(grouped.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        change: dict[str, Any] = {"change": mark, "object": title, "clusters": names, "lines": list(lines)}
        if mark == "~":
            manifest = manifests[(mark, title, lines)]
            change["replaced_by"] = replace.forcing(manifest, lines)
            change["rollout"] = rollout(manifest, names, rollouts or {}) if replace.rolls(manifest, lines) else None
        found.append(change)
    return found


def consequence(change: dict[str, Any]) -> str | None:
    """What `pulumi up` does beyond patching a changed object: replace it, or roll its pods."""
    if change.get("replaced_by"):
        return (f"=> replaced, not updated (pulumi-kubernetes will not patch {', '.join(change['replaced_by'])}): "
                "deleted and created again in each cluster")
    r = change.get("rollout")
    if r is None:
        return None
    each = "" if r["replicas"] is None else f"{r['replicas']:,} replicas"
    took = (f", {duration(r['seconds'])} per the plan ({r['surge']:,} a wave, at peak replicas)"
            if r["seconds"] is not None else ", a time the plan does not size")
    return f"=> rolling update: {each or 'its pods'} over {r['clusters']} cluster{'s' if r['clusters'] > 1 else ''}{took}"


def rollout_summary(found: list[dict[str, Any]]) -> str | None:
    """One line over the changes: how many replicas roll, the longest rollout, what is replaced."""
    rolled = [c for c in found if c.get("rollout")]
    replaced = [c for c in found if c.get("replaced_by")]
    if not rolled and not replaced:
        return None
    timed = [c for c in rolled if c["rollout"]["seconds"] is not None]
    parts = []
    if rolled:
        replicas = sum(c["rollout"]["replicas"] or 0 for c in rolled)
        parts.append(f"{len(rolled)} workload{'s' if len(rolled) > 1 else ''} roll{'' if len(rolled) > 1 else 's'} "
                     f"{'their' if len(rolled) > 1 else 'its'} pods" + (f", {replicas:,} replicas counted" if replicas else ""))
    if timed:
        longest = max(timed, key=lambda c: c["rollout"]["seconds"])
        parts.append(f"the longest {duration(longest['rollout']['seconds'])} ({longest['object']})")
    if replaced:
        count = sum(len(c["clusters"]) for c in replaced)
        parts.append(f"{count} object{'s' if count > 1 else ''} replaced "
                     "(" + ", ".join(c["object"] for c in replaced[:3]) + (", ..." if len(replaced) > 3 else "") + ")")
    return "rollout: " + "; ".join(parts)


def objects_section(base: dict[str, Any], head: dict[str, Any], selection: Selection = EVERYTHING,
                    rollouts: Rollouts | None = None) -> list[str]:
    """Added / removed / changed objects; identical changes across clusters printed once, each with
    what it does beyond a patch (a rollout, a replacement) and a line over them all."""
    found = object_changes(base, head, selection, rollouts)
    total = len([c for c in set(base) | set(head) if selection.cluster(c)])
    counts = {mark: sum(len(c["clusters"]) for c in found if c["change"] == mark) for mark in "+-~"}
    out = [f"objects: {counts['+']} added, {counts['-']} removed, {counts['~']} changed (over {total} clusters)"]
    summary = rollout_summary(found)
    out += [summary] if summary else []
    for c in found:
        out.append(f"  {c['change']} {c['object']}  [{_clusters(c['clusters'], total)}]")
        out += [f"      {line}" for line in c["lines"]]
        then = consequence(c)
        out += [f"      {then}"] if then else []
    return out


def _cloud_manifests(side: dict[str, Any]) -> dict[str, Any]:
    """Each cloud resource as a manifest of kind <type token> named by its name, with its protect
    flag and properties, so cloud resources diff like objects."""
    return {cluster: {key: {"kind": r["type"], "metadata": {"name": r["name"]}, "protect": r["protect"],
                            "properties": r["properties"]} for key, r in resources.items()}
            for cluster, resources in side.items()}


def cloud_section(base: dict[str, Any], head: dict[str, Any], selection: Selection = EVERYTHING) -> list[str]:
    """Cloud resources (a provisioner's node pools), diffed like objects. Nothing when neither side
    has any."""
    if not any(base.values()) and not any(head.values()):
        return []
    first, *rest = objects_section(_cloud_manifests(base), _cloud_manifests(head), selection)
    return [first.replace("objects:", "cloud resources:", 1), *rest]


# ---- capacity and the simulated night -------------------------------------------------------

def _count(x: float) -> str:
    return f"{x:,.0f}"


def _pct(x: float) -> str:
    return f"{x:.3f}%"


def _delta(old: float | None, new: float | None, fmt: Callable[[float], str] = _count) -> str:
    if old is None or new is None:
        return f"{'none' if old is None else fmt(old)} -> {'none' if new is None else fmt(new)}"
    if old == new:
        return f"{fmt(new)} (unchanged)"
    sign = "+" if new > old else "-"
    return f"{fmt(old)} -> {fmt(new)} ({sign}{fmt(abs(new - old))})"


PLAN_FIGURES: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("capacity_tpm", f"capacity {RATE_UNIT}", si), ("forecast_tpm", f"forecast {RATE_UNIT}", si),
    ("replicas", "peak replicas", _count), ("floor", "floor replicas", _count),
    ("gpus", "GPUs", _count), ("nodes", "nodes", _count), ("cost_usd", "cost by the plan", usd))
NIGHT_FIGURES: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("unmet_pct", "unmet tokens", _pct), ("gpu_hours", "GPU-hours", _count),
    ("oracle_gpu_hours", "oracle GPU-hours", _count), ("policy_oracle_gpu_hours", "policy oracle GPU-hours", _count),
    ("cost_usd", "cost", usd), ("demand_tokens", "demand tokens", si))


def _pairs(old: dict[str, Any], new: dict[str, Any], figures: tuple, per_line: int) -> list[str]:
    """`label: old -> new (+d)` for each figure, `per_line` to a line, joined by '; '."""
    cells = [f"{label}: {_delta(old.get(key), new.get(key), fmt)}" for key, label, fmt in figures]
    return ["; ".join(cells[i:i + per_line]) for i in range(0, len(cells), per_line)]


def night_cost(night: dict[str, Any] | None) -> float | None:
    """The simulated night's cost over its workloads; None without a side or a price."""
    return cost.total(r.get("cost_usd") for r in night.values()) if night else None


def summary_section(base_plan: dict[str, Any] | None, head_plan: dict[str, Any],
                    base_night: dict[str, Any] | None, head_night: dict[str, Any] | None,
                    selection: Selection = EVERYTHING) -> list[str]:
    """Per model what the plan and the simulated night say, base -> head: a changed model in a few
    lines, the unchanged ones together on one. Capacity as `peaknight plan` defines it, in tok/min."""
    old_models = base_plan["models"] if base_plan else {}
    old_night, new_night = base_night or {}, head_night or {}
    out = [f"summary, all clusters (capacity as `peaknight plan` states it, in {RATE_UNIT}):"]
    unchanged = []
    for name in sorted(n for n in set(old_models) | set(head_plan["models"]) if named_after(n, selection.models)):
        old, new = old_models.get(name, {}), head_plan["models"].get(name, {})
        night_old, night_new = old_night.get(name, {}), new_night.get(name, {})
        if old == new and night_old == night_new:
            unchanged.append(f"{name} ({new['replicas']:,} peak replicas, {new['gpus']:,} GPUs, "
                             f"{si(new['capacity_tpm'])} {RATE_UNIT})")
            continue
        out.append(f"  {name}:")
        out += [f"    {line}" for line in _pairs(old, new, PLAN_FIGURES, 2)]
        moments = {**old.get("moments", {}), **new.get("moments", {})}
        moved = [f"{moment} {_delta(old.get('moments', {}).get(moment), new.get('moments', {}).get(moment))}"
                 for moment in moments if old.get("moments", {}).get(moment) != new.get("moments", {}).get(moment)]
        if moved:
            out.append(f"    pre-scale replicas: {'; '.join(moved)}")
        out += [f"    simulated night: {line}" if i == 0 else f"      {line}"
                for i, line in enumerate(_pairs(night_old, night_new, NIGHT_FIGURES, 2))]
    if unchanged:
        out.append(f"  unchanged: {', '.join(unchanged)}")
    out.append(f"  node pool GPU limits: {_delta(base_plan['gpu_limit'] if base_plan else None, head_plan['gpu_limit'])}")
    out.append(f"  the night's cost: by the plan {_delta(base_plan.get('cost_usd') if base_plan else None, head_plan.get('cost_usd'), usd)}; "
               f"simulated {_delta(night_cost(base_night), night_cost(head_night), usd)}")
    short_old, short_new = set(base_plan["short"]) if base_plan else set(), set(head_plan["short"])
    if short_old != short_new:
        out.append(f"  short models: {sorted(short_old) or 'none'} -> {sorted(short_new) or 'none'}")
    return out


def snapshots(stack: str, ref: str) -> tuple[Path, str, dict[str, Any] | None, dict[str, Any]]:
    """(repository, stack file inside it, the base's snapshot or None, the working tree's)."""
    root, stack_rel = locate(stack)
    return root, stack_rel, base_snapshot(root, stack_rel, ref), take(root / stack_rel, "working tree",
                                                                       str(root / stack_rel))


def report(stack: str, ref: str, selection: Selection = EVERYTHING) -> str:
    root, stack_rel, base, head = snapshots(stack, ref)
    header = f"peaknight diff {stack_rel}: {ref} -> working tree ({root})"
    if base is None:
        header += f"\n(the stack file does not exist at {ref}: everything is added)"
    lines = [header, ""]
    lines += summary_section(base["plan"] if base else None, head["plan"], base["simulation"] if base else None,
                             head["simulation"], selection)
    lines += ["", *objects_section(base["objects"] if base else {}, head["objects"], selection,
                                   head["plan"]["rollouts"])]
    cloud = cloud_section(base.get("cloud", {}) if base else {}, head.get("cloud", {}), selection)
    lines += ["", *cloud] if cloud else []
    return "\n".join(lines)


def document(stack: str, ref: str, selection: Selection = EVERYTHING) -> dict[str, Any]:
    """`peaknight diff --format json`: the summary's figures per workload on both sides (all
    clusters), and every object and cloud resource change of the selection with its clusters."""
    _, stack_rel, base, head = snapshots(stack, ref)
    old_plan = base["plan"] if base else {"models": {}, "gpu_limit": None, "short": []}
    old_night, new_night = (base or {}).get("simulation") or {}, head["simulation"] or {}
    names = sorted(n for n in set(old_plan["models"]) | set(head["plan"]["models"]) if named_after(n, selection.models))
    return {"stack": stack_rel, "base": ref,
            "models": {n: {"base": old_plan["models"].get(n), "head": head["plan"]["models"].get(n),
                           "night_base": old_night.get(n), "night_head": new_night.get(n)} for n in names},
            "gpu_limit": {"base": old_plan["gpu_limit"], "head": head["plan"]["gpu_limit"]},
            "cost_usd": {"base": old_plan.get("cost_usd"), "head": head["plan"]["cost_usd"],
                         "night_base": night_cost(old_night), "night_head": night_cost(new_night)},
            "short": {"base": old_plan["short"], "head": head["plan"]["short"]},
            "objects": object_changes(base["objects"] if base else {}, head["objects"], selection,
                                      head["plan"]["rollouts"]),
            "cloud": object_changes(_cloud_manifests(base.get("cloud", {}) if base else {}),
                                    _cloud_manifests(head.get("cloud", {})), selection)}
