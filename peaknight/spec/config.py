"""Stack config: read a stack file (or Pulumi's config), validate it all at once, return a StackSpec.

Validation happens here and only here. Every problem in a file is collected and reported together,
one line each: the file, the key path as Pulumi spells it (``peaknight:models[2].gpu``), what was
expected and what was found, with a "did you mean" for misspelt keys and enum values. Later layers
trust the frozen spec they get.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import os
import re
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from pydantic import TypeAdapter, ValidationError

from peaknight.engines import recipes
from peaknight.engines.base import Topology
from peaknight.engines.registry import ENGINES
from peaknight.plan import fabric, memory
from peaknight.plan.capacity import interconnect
from peaknight.spec import moved
from peaknight.spec import origins as origin_grammar
from peaknight.provisioners.settings import (PROVISIONER_CLOUD, PROVISIONER_SETTINGS, ExistingSettings,
                                             VolcengineVkeSettings)
from peaknight.spec import files, keys, partial, profiles
from peaknight.spec import formats, registry_mirror
from peaknight.spec.weights_from import HubSource, ModelScopeSource, S3Source
from peaknight.spec.stack import POLICY_DEFAULTS, AuthType, CapacityType, Model, Stage, StackSpec

NAMESPACE = keys.NAMESPACE
KUBECONFIG_PREFIX = "kubeconfig-"
# A volcengine-vke cluster's credentials for its Volcano Engine provider: secrets, like kubeconfigs.
VOLCENGINE_PREFIXES = ("volcengine-access-key-", "volcengine-secret-key-")
SECRET_PREFIXES = (KUBECONFIG_PREFIX, *VOLCENGINE_PREFIXES)


def project_root(start: Path | None = None) -> Path:
    """The Pulumi project a command runs in: the nearest directory from `start` (the working
    directory) up that holds Pulumi.yaml, else `start` itself. Stack names resolve under its stacks/."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    return here

IMAGE_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\Z")
# The digest the shipped stacks carry where only the operator's registry knows the real one.
PLACEHOLDER_DIGEST = "@sha256:" + "0" * 64
# Likewise for weights: only the operator's mirror knows the revision it holds.
PLACEHOLDER_REVISION = "0" * 40
_SPEC_ADAPTER = TypeAdapter(StackSpec)
# One night: the broadcast window is 5 h 15 min. The simulator, the disruption freeze and the
# cron floors all span the window, so a typo'd year must not make it years long.
MAX_WINDOW = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a stack file, formatted as the CLI prints it."""

    source: str
    path: str
    expected: str
    found: str = ""
    hint: str = ""

    def __str__(self) -> str:
        """One line whatever the parts hold: a raw newline in a key, a value or a file name is
        printed escaped, so a hostile file cannot forge lines of its own."""
        found = f"; found {escaped(self.found)}" if self.found else ""
        hint = f" (did you mean {escaped(self.hint)}?)" if self.hint else ""
        return f"{escaped(self.source)}: {escaped(self.path)}: expected {escaped(self.expected)}{found}{hint}"


def escaped(text: str) -> str:
    """`text` with every unprintable character (newline, carriage return, line separators,
    escape sequences) written as its Python escape."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigError(Exception):
    """Bad input: carries every problem found; the CLI prints them and exits 2."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class LoadedStack:
    path: Path
    spec: StackSpec

    @property
    def name(self) -> str:
        """Stack name from the file name (Pulumi.<name>.yaml), else the file stem."""
        match = re.fullmatch(r"Pulumi\.(.+)\.ya?ml", self.path.name)
        return match.group(1) if match else self.path.stem


STACKS_ENV = "PEAKNIGHT_STACKS"


def stacks_dir(root: Path | None = None) -> Path:
    """Where stack names resolve: $PEAKNIGHT_STACKS when set (a team's own stack folder, or the
    tests' copies of the shipped nights), else the project's stacks/ (Pulumi.yaml's stackConfigDir)."""
    override = os.environ.get(STACKS_ENV)
    if override and root is None:
        return Path(override)
    return (root or project_root()) / "stacks"


def resolve_stack_path(stack: str, root: Path | None = None) -> Path:
    """A stack name means <stacks_dir>/Pulumi.<name>.yaml; anything path-like is taken as a file."""
    if stack.endswith((".yaml", ".yml")) or "/" in stack:
        return Path(stack)
    return stacks_dir(root) / f"Pulumi.{stack}.yaml"


def load_stack(stack: str) -> LoadedStack:
    """The stack file, with the calibration file beside it read above the shipped profiles (and
    its own profiles file, `peaknight:profiles`, relative to it)."""
    path = resolve_stack_path(stack)
    profiles.use_calibration(path.parent / profiles.CALIBRATION_FILE)
    return LoadedStack(path, parse(read_stack_file(path), str(path), base=path.parent))


# Bounds on the file itself, checked before anything is built from it. The shipped stacks are
# about 10 KB, about 900 YAML nodes and 6 levels deep; these limits are two orders of magnitude
# above and keep a hostile file (gigabytes, an alias bomb, a 100,000-deep nesting) to a refusal
# in milliseconds instead of a hang, a recursion error or a crashed parser.
MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 100_000
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `peaknight:` keys of a Pulumi stack file, prefix stripped. Other namespaces are ignored."""
    source = str(path)
    text = read_input(path, MAX_BYTES, "a readable stack file")
    doc = load_yaml(text, source)
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ConfigError([Problem(source, "config", "a mapping of Pulumi config keys", show(doc))])
    prefix = NAMESPACE + ":"
    raw = {key[len(prefix):]: value for key, value in doc["config"].items()
           if isinstance(key, str) and key.startswith(prefix)}
    if not raw:
        raise ConfigError([Problem(source, "config", f"keys under the '{NAMESPACE}:' namespace", "none")])
    return raw


def read_input(path: Path, limit: int, what: str) -> str:
    """The text of an input file (a stack file, calibration.yaml, a rehearsal's results), read as
    hostile: a regular file of at most `limit` bytes (files.py), UTF-8; else a ConfigError whose
    one line expects `what`."""
    source = str(path)
    try:
        data = files.read_bounded(path, limit)
    except files.Refused as err:
        raise ConfigError([Problem(source, "(file)", err.describe(what), err.found)]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError([Problem(source, "(file)", "UTF-8 text", f"byte 0x{data[err.start]:02x} at offset "
                                   f"{err.start}")]) from None


def load_yaml(text: str, source: str) -> Any:
    """YAML to Python, after a streaming pass over the parser's events has measured the document
    as it would expand (aliases counted at the size of what they point to): deeper than MAX_DEPTH
    or larger than MAX_NODES is refused before any object is built. A key twice in one mapping is
    refused too: YAML loaders keep the last silently, so one of two edits would never apply."""
    def fail(event: yaml.Event, expected: str, found: str = "more") -> ConfigError:
        mark = event.start_mark
        return ConfigError([Problem(source, f"line {mark.line + 1}" if mark else "(file)", expected, found)])

    anchors: dict[str, tuple[int, int]] = {}   # anchor -> (nodes, height) of the node it names
    open_nodes: list[list[Any]] = []           # per open collection: [nodes, height, anchor, keys, children]
    seen_document = False
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                keys: set[str] | None = set() if isinstance(event, yaml.MappingStartEvent) else None
                open_nodes.append([1, 0, event.anchor, keys, 0])
                if len(open_nodes) > MAX_DEPTH:
                    raise fail(event, f"at most {MAX_DEPTH} levels of nesting")
                continue
            if isinstance(event, yaml.ScalarEvent):
                nodes, height, anchor = 1, 0, event.anchor
            elif isinstance(event, yaml.AliasEvent):
                (nodes, height), anchor = anchors.get(event.anchor or "", (1, 0)), None
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                nodes, height, anchor, _, _ = open_nodes.pop()
            elif isinstance(event, yaml.DocumentStartEvent):
                if seen_document:
                    raise fail(event, "one YAML document", "another")
                seen_document = True
                continue
            else:
                continue
            if anchor is not None:
                anchors[anchor] = (nodes, height)
            if len(open_nodes) + height > MAX_DEPTH:
                raise fail(event, f"at most {MAX_DEPTH} levels of nesting (aliases expanded)")
            if open_nodes:
                parent = open_nodes[-1]
                parent[0] += nodes
                parent[1] = max(parent[1], height + 1)
                if parent[3] is not None and parent[4] % 2 == 0 and isinstance(event, yaml.ScalarEvent):
                    if event.value in parent[3]:
                        raise fail(event, "each key once in a mapping", f"{event.value!r} again")
                    parent[3].add(event.value)
                parent[4] += 1
                if parent[0] > MAX_NODES:
                    raise fail(event, f"at most {MAX_NODES:,} YAML nodes (aliases expanded)")
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        found = str(getattr(err, "problem", None) or err).replace("\n", " ")
        raise ConfigError([Problem(source, where, "valid YAML", found)]) from None
    except (ValueError, OverflowError) as err:   # a timestamp YAML recognises but no calendar has
        raise ConfigError([Problem(source, "(file)", "valid YAML values", str(err))]) from None


@dataclass(frozen=True)
class Pinned:
    """An image the stack runs, at its key path (`models[0].image`), with the kit's default when
    the stack may leave the key out (None: the stack must set it)."""

    path: str
    image: str
    default: str | None = None


def _default(field: dataclasses.Field) -> Any:
    """A field's default, whether plain or a pydantic Field(default=...)."""
    return getattr(field.default, "default", field.default)


def pinned_images(spec: StackSpec) -> list[Pinned]:
    """Every image of the stack, once per key that names it."""
    found = [Pinned(f"models[{i}].image", m.image) for i, m in enumerate(spec.models)]
    found += [Pinned(f"models[{i}].weightsFrom.image", m.weights_from.image) for i, m in enumerate(spec.models)
              if isinstance(m.weights_from, (S3Source, ModelScopeSource))]
    found += [Pinned(f"edges[{i}].{keys.alias(f)}", getattr(e, f.name), _default(f)) for i, e in enumerate(spec.edges)
              for f in dataclasses.fields(e) if f.name.endswith("image")]
    router = next(f for f in dataclasses.fields(spec.router) if f.name == "image")
    found.append(Pinned("router.image", spec.router.image, _default(router)))
    if spec.load_replay is not None:
        found.append(Pinned("loadReplay.image", spec.load_replay.image))
    return found


def placeholders(spec: StackSpec, source: str) -> list[Problem]:
    """Images pinned to the all-zero placeholder digest, weights to the placeholder revision,
    clusters without their API server's addresses and global names in the placeholder zone and
    example domain, one line per key: valid config (the shipped stacks carry them, since only the
    operator's registry, mirror, cluster and DNS know the real ones) but nothing a night can run on. `render` and `validate`
    warn with these lines; `validate --strict` and `pulumi up` of a broadcast stage refuse them."""
    P = lambda path, expected, found: Problem(source, f"{NAMESPACE}:{path}", expected, found)  # noqa: E731
    lines = [P(pin.path, f"your registry's digest of {pin.image[:-len(PLACEHOLDER_DIGEST)]} (crane digest "
               f"{pin.image[:-len(PLACEHOLDER_DIGEST)]})", "the all-zero placeholder digest")
             for pin in pinned_images(spec) if pin.image.endswith(PLACEHOLDER_DIGEST)]
    lines += [P(f"models[{i}].weightsRevision", f"the commit of {m.weights} your mirror holds (40 hex)",
                "the all-zero placeholder revision")
              for i, m in enumerate(spec.models) if m.weights_revision == PLACEHOLDER_REVISION]
    # Every model has an endpoint picker or a router that watches the API: without the API server's
    # addresses their NetworkPolicies can only open its ports, to any address. Only the cluster
    # knows them, so a rehearsal may go without; the night's clusters may not.
    if spec.policy.stage is Stage.BROADCAST and spec.models:
        lines += [P(f"clusters[{i}].apiServerCidrs", "the API server's addresses, so the endpoint pickers and "
                    "routers reach it alone (kubectl get endpointslices -n default -l "
                    "kubernetes.io/service-name=kubernetes)", "nothing (any address on 443/6443)")
                  for i, c in enumerate(spec.clusters) if not c.api_server_cidrs]
    if spec.steering is not None and spec.steering.zone_id.strip("Z0") == "":
        lines.append(P("steering.zoneId", "your hosted zone's ID (aws route53 list-hosted-zones-by-name)",
                       "the all-zero placeholder zone"))
    if spec.steering is not None and f".{spec.steering.domain}".endswith(".example.com"):
        lines.append(P("steering.domain", "your event's domain (the hosted zone's)",
                       f"'{spec.steering.domain}', under example.com (reserved for examples, RFC 2606)"))
    return lines


def _unpinned(spec: StackSpec, P: Any, pin: Pinned) -> Iterable[Problem]:
    """An image that must be pinned by digest (the stage asks for it) and is not. Left to the kit's
    default (a tag), the line says what to set."""
    if not spec.policy.require_image_digests or IMAGE_DIGEST.search(pin.image):
        return
    expected = f"an image pinned by digest (…@sha256:<64 hex>) in a {spec.policy.stage.value} stack"
    if pin.image == pin.default:
        yield P(pin.path, f"{expected}: set {NAMESPACE}:{pin.path} to {pin.image}@sha256:<your registry's digest> "
                f"(crane digest {pin.image})", f"'{pin.image}', the kit's default for a stack that does not set it")
    else:
        yield P(pin.path, expected, show(pin.image))


def top_level_keys() -> list[str]:
    """The camelCase top-level config keys, as `pulumi config set` spells them."""
    return [keys.alias(f) for f in dataclasses.fields(StackSpec)]


def parse(raw: dict[str, Any], source: str, base: Path | None = None) -> StackSpec:
    """Validate raw config (the `peaknight:` keys, prefix stripped, as a stack file holds them) into
    a StackSpec, or raise ConfigError listing every problem, one line each naming `source`, the key
    path and what was expected: the CLI's validation, for a program of one's own. A relative
    `profiles` path is read from `base` (default: the working directory)."""
    raw = dict(raw)
    problems = _check_secrets(raw, source)
    known = set(top_level_keys())
    for key in list(raw):
        if key.startswith(SECRET_PREFIXES):
            raw.pop(key)
        elif key not in known:
            problems.append(_unknown_key(source, key, "a known key", _suggest(key, known, prefix=f"{NAMESPACE}:")))
            raw.pop(key)
    policy = raw.get("policy")
    if isinstance(policy, dict):
        # null would replace the stage's default with nothing: leave the key out instead.
        for key in [k for k, v in policy.items() if v is None and k != "stage"]:
            problems.append(Problem(source, f"{NAMESPACE}:policy.{key}", "a value (leave the key out for the "
                                    "stage's default)", "null"))
            policy = {k: v for k, v in policy.items() if k != key}
        stage = policy.get("stage")
        raw["policy"] = {**POLICY_DEFAULTS[stage], **policy} if isinstance(stage, str) and stage in POLICY_DEFAULTS \
            else policy
    try:
        spec = _SPEC_ADAPTER.validate_python(raw, by_alias=True, by_name=False)
    except ValidationError as err:
        found = _from_pydantic(err, source)
        stage = f"{NAMESPACE}:policy.stage"
        if any(p.path == stage for p in found):
            # No stage, no defaults: the keys it would have filled in are not problems of their own.
            found = [p for p in found if not (p.path.startswith(f"{NAMESPACE}:policy.") and p.path != stage
                                              and p.expected == "this required key")]
        problems += found + _cross_checks_set_aside(raw, err, source, base)
        raise ConfigError(problems) from None
    spec = _own_profiles(spec, source, base, problems)
    return check(spec, source, earlier=problems)


def _own_profiles(spec: StackSpec, source: str, base: Path | None, earlier: list[Problem]) -> StackSpec:
    """The spec with its `profiles` path resolved against `base` (the stack file's folder); a
    missing file is reported with the problems found before it (`earlier`)."""
    if spec.profiles is None:
        return spec
    own = (base or Path.cwd()) / spec.profiles
    if not own.is_file():
        raise ConfigError([*earlier, Problem(source, f"{NAMESPACE}:profiles", "a profiles file (relative to the "
                                              "stack file)", f"no file at {own}")])
    return dataclasses.replace(spec, profiles=str(own.resolve()))


def check(spec: StackSpec, source: str = "StackSpec built in code", earlier: Iterable[Problem] = ()) -> StackSpec:
    """The rules across keys (references, sums, the profiles a model needs, the stage's policy),
    with the stack's own profiles file read above the shipped table: what every stack file passes
    after its types, and what a spec built in code passes before it is planned (pk.capacity_plan),
    so both fail the same way, one line per problem, after the `earlier` problems of the same file
    (all of a file's problems in one pass). Returns `spec`."""
    problems = list(earlier)
    profiles.use_profiles(Path(spec.profiles) if spec.profiles is not None else None)
    try:
        profiles.load()
    except ConfigError as err:
        profiles.use_profiles(None)
        raise ConfigError([*problems, *err.problems]) from None
    problems += _cross_checks(spec, source)
    if problems:
        raise ConfigError(problems)
    return spec


def _cross_checks_set_aside(raw: dict[str, Any], err: ValidationError, source: str,
                            base: Path | None) -> list[Problem]:
    """The cross-key problems of a file with bad values too, so every problem shows in one pass:
    on the config with those values set aside (partial.py), read back in the file's indices, with
    the stack's own profiles file above the shipped table as `check` reads it."""
    aside = partial.set_aside(raw, err.errors(include_url=False))
    if aside is None:
        return []
    try:
        spec = _own_profiles(_SPEC_ADAPTER.validate_python(aside.raw, by_alias=True, by_name=False), source, base, [])
        profiles.use_profiles(Path(spec.profiles) if spec.profiles is not None else None)
        profiles.load()
    except (ValidationError, ConfigError):
        profiles.use_profiles(None)
        return []  # setting one value aside broke another, or its profiles file is bad: those problems stand alone
    out = []
    for problem in _cross_checks(spec, source):
        loc = aside.original(keys.parse_path(problem.path))
        if not aside.hides(loc, f"{problem.expected} {problem.found}"):
            out.append(dataclasses.replace(problem, path=keys.path(loc)))
    return out


def _check_secrets(raw: dict[str, Any], source: str) -> list[Problem]:
    """Kubeconfigs (`kubeconfig-<cluster>`) and cloud credentials (`volcengine-access-key-<cluster>`,
    `volcengine-secret-key-<cluster>`) must be Pulumi secrets, never plain text."""
    listed = raw.get("clusters")
    clusters = {c.get("name") for c in (listed if isinstance(listed, list) else []) if isinstance(c, dict)
                and isinstance(c.get("name"), str)}
    problems = []
    for key, value in raw.items():
        prefix = next((p for p in SECRET_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            continue
        cluster = key[len(prefix):]
        what = "a kubeconfig" if prefix == KUBECONFIG_PREFIX else "a credential"
        if cluster not in clusters:
            problems.append(Problem(source, f"{NAMESPACE}:{key}", f"{what} for a cluster in peaknight:clusters",
                                    f"no cluster named '{cluster}'", _suggest(cluster, sorted(str(c) for c in clusters))))
        elif not (isinstance(value, dict) and set(value) == {"secure"}):
            problems.append(Problem(source, f"{NAMESPACE}:{key}",
                                    f"a Pulumi secret (pulumi config set --secret {key} ...)", "a plain-text value"))
    return problems


# ---- pydantic errors -> one line each --------------------------------------------------------

def _from_pydantic(err: ValidationError, source: str) -> list[Problem]:
    problems = []
    errors = err.errors(include_url=False)
    for e in errors:
        loc = tuple(e["loc"])
        kind = e["type"]
        if kind == "too_short" and any(tuple(o["loc"])[:len(loc)] == loc and len(o["loc"]) > len(loc)
                                       for o in errors):
            continue  # a list emptied by its own items' errors: those errors say what is wrong
        if kind == "union_tag_not_found" or (kind == "union_tag_invalid" and not isinstance(e["input"], dict)):
            members = keys.TAGGED.get(next((str(p) for p in reversed(keys.untagged(loc)) if isinstance(p, str)), ""), {})
            problems.append(Problem(source, keys.path(loc), "a mapping with a kind (one of "
                                    + ", ".join(members) + ")", show(e["input"])))
            continue
        if kind in partial.UNKNOWN_KEY:
            allowed = keys.keys_at(loc[:-1])
            problems.append(_unknown_key(source, keys.path(loc)[len(NAMESPACE) + 1:], "a known key" + (
                f" ({', '.join(sorted(allowed))})" if allowed else ""), _suggest(str(loc[-1]), allowed)))
        elif kind in ("too_short", "too_long"):
            limit = e["ctx"]["min_length" if kind == "too_short" else "max_length"]
            problems.append(Problem(source, keys.path(loc), f"{'at least' if kind == 'too_short' else 'at most'} {limit} "
                                    f"item{'s' if limit != 1 else ''}", show(e["input"])))
        elif kind == "union_tag_invalid":
            choices = re.findall(r"'([^']*)'", e["ctx"]["expected_tags"])
            tag = str(e["ctx"]["tag"])
            problems.append(Problem(source, keys.path(loc + ("kind",)), "one of " + ", ".join(choices), show(tag),
                                    _suggest(tag, choices)))
        elif kind == "missing":
            problems.append(Problem(source, keys.path(loc), "this required key", "nothing"))
        elif kind == "enum":
            choices = re.findall(r"'([^']*)'", e["ctx"]["expected"])
            problems.append(Problem(source, keys.path(loc), "one of " + ", ".join(choices), show(e["input"]),
                                    _suggest(str(e["input"]), choices)))
        else:
            message = re.sub(r"^(Input should be|Value error,)\s*", "", e["msg"])
            problems.append(Problem(source, keys.path(loc), message, show(e["input"])))
    return problems


def _unknown_key(source: str, path: str, expected: str, hint: str) -> Problem:
    """A key this format does not have: where it went when an earlier format had it (moved.py),
    else what the format allows here and the closest spelling."""
    row = moved.find(path)
    if row is None:
        return Problem(source, f"{NAMESPACE}:{path}", expected, "an unknown key", hint)
    return Problem(source, f"{NAMESPACE}:{path}", f"{row.new_at(path)} instead: the key moved in {row.release} ({row.edit}; "
                   "CHANGELOG.md)", "a key of an earlier stack format")


def _suggest(word: str, candidates: Iterable[Any], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, [str(c) for c in candidates if c is not None], n=1, cutoff=0.6)
    return f"'{prefix}{close[0]}'" if close else ""


def show(value: Any) -> str:
    text = repr(value.value if isinstance(value, Enum) else value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- checks across keys ----------------------------------------------------------------------

def _duplicates(items: Iterable[Any], key: str, source: str) -> Iterable[Problem]:
    seen = Counter(getattr(item, "name") for item in items)
    for i, item in enumerate(items):
        if seen[item.name] > 1:
            yield Problem(source, f"{NAMESPACE}:{key}[{i}].name", "a unique name", f"'{item.name}' more than once")


def _steering(spec: StackSpec, P: Callable[..., Problem]) -> Iterable[Problem]:
    """One global name lives in one cloud's DNS: every cluster on that cloud, the zone ID in its
    form, and every name (global and per cluster) a DNS name of at most 253 characters."""
    steering = spec.steering
    if steering is None:
        return
    clouds = {PROVISIONER_CLOUD[c.provisioner.kind] for c in spec.clusters}
    if len(clouds) != 1 or None in clouds:
        first = PROVISIONER_CLOUD[spec.clusters[0].provisioner.kind]
        odd = [f"{c.name}: {c.provisioner.kind}" for c in spec.clusters
               if PROVISIONER_CLOUD[c.provisioner.kind] is None or PROVISIONER_CLOUD[c.provisioner.kind] != first]
        yield P("steering", "every cluster on one cloud with DNS the kit declares (karpenter-aws: Route 53, "
                "volcengine-vke: TrafficRoute)", ", ".join(odd))
    elif clouds == {"volcengine"} and not steering.zone_id.isdigit():
        yield P("steering.zoneId", "a TrafficRoute zone ID (digits) for volcengine-vke clusters", repr(steering.zone_id))
    elif clouds == {"aws"} and steering.zone_id.isdigit():
        yield P("steering.zoneId", "a Route 53 hosted zone ID (Z...) for karpenter-aws clusters", repr(steering.zone_id))
    for i, e in enumerate(spec.edges):
        if e.name == "api":   # api.<cluster>.<event>.<domain> is the assistant's own name in each cluster
            yield P(f"edges[{i}].name", "a name other than 'api' with peaknight:steering (the assistant's names)",
                    repr(e.name))
    for i, c in enumerate(spec.clusters):
        if c.name == "live":   # <edge>.live.<event>.<domain> is the edge's global name
            yield P(f"clusters[{i}].name", "a name other than 'live' with peaknight:steering (the edges' global "
                    "names)", repr(c.name))
    event = spec.event.name
    longest = max((name for c in spec.clusters for name in (steering.api_name(event, c.name), *(
        steering.edge_name(event, e.name, c.name) for e in spec.edges))), key=len)
    if len(longest) > 253:
        yield P("steering.domain", "a domain short enough that every name under it has at most 253 characters",
                f"{len(longest)} characters in {longest}")


def _cross_checks(spec: StackSpec, source: str) -> Iterable[Problem]:
    """Rules that span keys: references, sums, the stage's policy. All reported, not the first."""
    table = profiles.load()
    P = lambda path, expected, found="", hint="": Problem(source, f"{NAMESPACE}:{path}", expected, found, hint)  # noqa: E731

    yield from _steering(spec, P)
    if spec.render_directory and spec.gitops is None:
        # pulumi-kubernetes cannot render a helm.v3.Release (pulumi/pulumi-kubernetes#1716).
        yield P("gitops", "argocd or flux when peaknight:renderDirectory is set (add-ons as GitOps objects)",
                "nothing")
    if spec.gitops is not None and spec.gitops_repository is None:
        # Each cluster's root names the repository its controller syncs (addons/bootstrap.py).
        yield P("gitopsRepository", "the Git repository of the rendered manifests ({url, revision, path}) when "
                "peaknight:gitops is set", "nothing")
    if spec.gitops_repository is not None and spec.gitops is None:
        yield P("gitops", "argocd or flux when peaknight:gitopsRepository is set", "nothing")
    event = spec.event
    if event.window.end <= event.window.start:
        yield P("event.window.end", "a time after event.window.start", str(event.window.end))
    elif event.window.end - event.window.start > MAX_WINDOW:
        yield P("event.window.end", f"a window of at most {MAX_WINDOW.total_seconds() / 3600:g} hours (one night; "
                "a longer event is one stack per night)", str(event.window.end - event.window.start))
    yield from _duplicates(event.moments, "event.moments", source)
    for i, moment in enumerate(event.moments):
        if not event.window.start <= moment.at < event.window.end:
            yield P(f"event.moments[{i}].at", f"a time inside the window {event.window.start}..{event.window.end}",
                    str(moment.at))

    yield from _duplicates(spec.clusters, "clusters", source)
    total_share = sum(c.share for c in spec.clusters)
    if abs(total_share - 1) > 1e-6:
        yield P("clusters[*].share", "shares that add up to 1", f"{total_share:.6g}")
    for i, cluster in enumerate(spec.clusters):
        # One weight source per zone: a class per zone must name exactly the cluster's zones.
        if isinstance(cluster.model_cache_class, dict) and set(cluster.model_cache_class) != set(cluster.zones):
            yield P(f"clusters[{i}].modelCacheClass", "one StorageClass for each of the cluster's zones "
                    f"({', '.join(cluster.zones)})", ", ".join(cluster.model_cache_class) or "no zones")
    if spec.policy.survive_zone_loss:
        for i, cluster in enumerate(spec.clusters):
            if len(cluster.zones) < 2:
                yield P(f"clusters[{i}].zones", "at least 2 zones to survive the loss of one",
                        f"{len(cluster.zones)}")

    if spec.policy.stage is Stage.BROADCAST and CapacityType.SPOT in spec.policy.capacity_types:
        yield P("policy.capacityTypes", "reserved and/or on-demand only in a broadcast stack", "spot")
    if spec.load_replay is not None:
        if spec.policy.stage is Stage.BROADCAST:
            # The night's capacity serves viewers only: synthetic load would take it from them.
            yield P("loadReplay", "no load replay in a broadcast stack (rehearsal stages only)", "loadReplay")

    for name in spec.prices:
        if name not in table.instance_types:
            yield P(f"prices.{name}", "an instance type from the profile catalog (" + ", ".join(table.instance_types)
                    + ")", "an unknown instance type", _suggest(name, table.instance_types))
    yield from _duplicates(spec.gpu_pools, "gpuPools", source)
    for i, pool in enumerate(spec.gpu_pools):
        for j, gpu in enumerate(pool.gpus):
            if gpu not in table.gpus:
                yield P(f"gpuPools[{i}].gpus[{j}]", "one of " + ", ".join(table.gpus), show(gpu), _suggest(gpu, table.gpus))
        counts = set()
        for j, name in enumerate(pool.instance_types):
            itype = table.instance_types.get(name)
            if itype is None:
                yield P(f"gpuPools[{i}].instanceTypes[{j}]", "an instance type from the profile catalog ("
                        + ", ".join(table.instance_types) + ")", show(name), _suggest(name, table.instance_types))
            elif itype.gpu not in pool.gpus:
                yield P(f"gpuPools[{i}].instanceTypes[{j}]", f"an instance type with one of the pool's GPUs "
                        f"({', '.join(pool.gpus)})", f"'{name}' carries {itype.gpu}")
            else:
                counts.add(itype.gpus)
        if len(counts) > 1:
            yield P(f"gpuPools[{i}].instanceTypes", "instance types with the same GPU count per node",
                    ", ".join(str(c) for c in sorted(counts)))

    yield from _check_shared_instance_types(spec, P)
    yield from _check_clouds(spec, P)

    pools = {p.name: p for p in spec.gpu_pools}
    yield from _duplicates(spec.models, "models", source)
    yield from _workload_names(spec, P)
    for i, model in enumerate(spec.models):
        yield from _check_model(i, model, pools, spec, P)
        yield from _check_auth(i, model, spec, P)
        yield from _check_ladder(i, model, spec, P)

    for pin in pinned_images(spec):
        yield from _unpinned(spec, P, pin)
    yield from _check_mirror(spec, P)
    # Each model's endpoint picker is named <model>-epp (builders/routing.py): no model may be called so.
    names = {m.name for m in spec.models}
    for i, model in enumerate(spec.models):
        if model.name.endswith("-epp") and model.name[:-len("-epp")] in names:
            yield P(f"models[{i}].name", f"a name other than '{model.name[:-4]}' + '-epp' (that model's endpoint "
                    "picker is named so)", show(model.name))
        # A colocated model split into picker shards names them <model>-s<i> (builders/shards.py).
        shard = re.fullmatch(r"(.+)-s[0-9]+", model.name)
        if shard and shard.group(1) in names:
            yield P(f"models[{i}].name", f"a name other than '{shard.group(1)}' + '-s<number>' (that model's picker "
                    "shards are named so)", show(model.name))

    yield from _duplicates(spec.edges, "edges", source)
    for i, edge in enumerate(spec.edges):
        yield from _duplicates(edge.renditions, f"edges[{i}].renditions", source)
        share = sum(r.share for r in edge.renditions)
        if abs(share - 1) > 1e-6:
            yield P(f"edges[{i}].renditions[*].share", "shares that add up to 1", f"{share:.6g}")
        yield from _check_egress(i, edge, P)
        for j, name in enumerate(edge.node_instance_types):
            node = table.edge_instance_types.get(name)
            if node is None:
                yield P(f"edges[{i}].nodeInstanceTypes[{j}]", "an instance type from the profile catalog's "
                        "edge_instance_types (" + ", ".join(table.edge_instance_types) + ")", show(name),
                        _suggest(name, table.edge_instance_types))
            elif node.vcpus < edge.pod_cpu or node.memory_gib < edge.pod_memory_gib:
                yield P(f"edges[{i}].nodeInstanceTypes[{j}]", f"a node that holds one edge pod ({edge.pod_cpu} CPUs, "
                        f"{edge.pod_memory_gib} GiB)", f"'{name}' has {node.vcpus} vCPUs, {node.memory_gib} GiB")
        schemes = [o.scheme for o in origin_grammar.of(edge)]
        if len(set(schemes)) > 1:
            # One upstream group per tier: nginx's proxy_pass gives the whole group one scheme.
            yield P(f"edges[{i}].origins", "origins of one scheme (all http or all https)", ", ".join(schemes))
        elif schemes[0] == "http" and (edge.origin_server_name or edge.origin_ca_secret):
            key = "originServerName" if edge.origin_server_name else "originCaSecret"
            yield P(f"edges[{i}].{key}", "https origins for a TLS setting", "http origins")


def _check_mirror(spec: StackSpec, P: Any) -> Iterable[Problem]:
    """Sources a China region reaches: a broadcast stack on VKE pulls images from a mirror and weights
    from somewhere other than huggingface.co; a mirror's rule (spec/registry_mirror.py) must give
    every image a valid reference of its own."""
    mirror = spec.registry_mirror
    if spec.policy.stage is Stage.BROADCAST and any(isinstance(c.provisioner, VolcengineVkeSettings)
                                                    for c in spec.clusters):
        if mirror is None:
            yield P("registryMirror", "a registry mirror when a cluster uses volcengine-vke in a broadcast stack "
                    "(docker.io, ghcr.io, quay.io and registry.k8s.io are not reliably reachable from China "
                    "regions): {host: <your CR instance's domain>.cr.volces.com}, Volcano Engine CR", "nothing")
        for i, model in enumerate(spec.models):
            if isinstance(model.weights_from, HubSource) and model.weights_from.endpoint is None:
                yield P(f"models[{i}].weightsFrom", "weights from a source a China region reaches when a cluster "
                        "uses volcengine-vke in a broadcast stack: kind hub with an endpoint (a hub mirror), "
                        "kind s3 (Volcano Engine TOS) or kind modelscope", "huggingface.co (kind hub without an "
                        "endpoint)")
    if mirror is None:
        return
    came_from: dict[str, tuple[str, str]] = {}
    too_long = []
    for pin in pinned_images(spec):
        registry, path, _ = registry_mirror.split(pin.image)
        try:
            formats.image_reference(mirror.image(pin.image))
        except ValueError:
            too_long.append(pin.path)
        earlier = came_from.setdefault(path, (registry, pin.path))
        if earlier[0] != registry:
            yield P(pin.path, f"an image that does not share its mirrored name with {earlier[1]} (both become "
                    f"{mirror.host}/.../{path}: the mirror drops the registry)", f"{registry} and {earlier[0]}")
    if too_long:
        yield P("registryMirror.namespace", f"a prefix that keeps every image a valid reference (a name of at most "
                f"{formats.IMAGE_NAME_MAX} characters)", f"too long for {', '.join(too_long)}")


def _check_egress(i: int, edge: Any, P: Any) -> Iterable[Problem]:
    """The plan divides the viewers' egress by a pod's, and the shields' fetch by a shield's: a pod
    that cannot send one viewer's top rendition, or a shield one copy of the whole ladder, serves
    nobody, and the counts it would plan grow past what a float holds."""
    top = max(r.bitrate_kbps for r in edge.renditions)
    ladder = sum(r.bitrate_kbps for r in edge.renditions)
    for key, gbps, need, what in (("podEgressGbps", edge.pod_egress_gbps, top, "the top rendition's"),
                                  ("shieldEgressGbps", edge.shield_egress_gbps, ladder, "the whole ladder's")):
        if gbps * 1e6 < need:
            yield P(f"edges[{i}].{key}", f"at least {what} {need:,} kbps ({need / 1e6:g} Gbps): else one pod "
                    "serves nobody", f"{gbps:g}")


def _workload_names(spec: StackSpec, P: Any) -> Iterable[Problem]:
    """A disaggregated model's workloads and router are named `<model>-prefill`, `-decode` and
    `-router` (Deployments, LeaderWorkerSets, Services): another model of that name would be the
    same object."""
    owner = {f"{m.name}-{part}": m.name for m in spec.models if m.disaggregated
             for part in ("prefill", "decode", "router")}
    for i, m in enumerate(spec.models):
        if m.name in owner:
            yield P(f"models[{i}].name", f"a name no other model's objects use (model '{owner[m.name]}' is "
                    f"disaggregated: its workloads and router are named {owner[m.name]}-prefill, -decode, -router)",
                    f"'{m.name}'")


def _check_auth(i: int, model: Model, spec: StackSpec, P: Any) -> Iterable[Problem]:
    """The gateway's SecurityPolicy needs a key set for jwt; a broadcast's public routes need one at all."""
    auth = model.auth
    if auth.type is AuthType.JWT:
        # Without issuer and audience, any token the key set verifies is accepted, whoever it was minted for.
        required = (("jwksUri", auth.jwks_uri, "the issuer's JWKS URL (https) for auth type jwt"),
                    ("issuer", auth.issuer, "the iss claim tokens must carry, for auth type jwt"),
                    ("audiences", auth.audiences, "the aud claims accepted (one at least), for auth type jwt"))
        for key, value, what in required:
            if not value:
                yield P(f"models[{i}].auth.{key}", what, "nothing")
    elif auth.jwks_uri or auth.issuer or auth.audiences:
        yield P(f"models[{i}].auth.type", "jwt where jwksUri, issuer or audiences is set", show(auth.type))
    if auth.type is AuthType.NONE and spec.policy.stage is Stage.BROADCAST:
        yield P(f"models[{i}].auth.type", "apiKey or jwt in a broadcast stack (its routes are public)", "'none'")


def _check_ladder(i: int, model: Model, spec: StackSpec, P: Any) -> Iterable[Problem]:
    """A ladder's fallback is another model of the stack whose engine answers to this model's name
    (the gateway forwards the request body unchanged); a per-client limit needs a client id."""
    if model.admission.client_tokens_per_minute is not None and model.auth.type is AuthType.NONE:
        yield P(f"models[{i}].admission.clientTokensPerMinute", "auth type apiKey or jwt (the limit counts per "
                "client id)", "auth type 'none'")
    ladder = model.ladder
    if ladder is None:
        return
    if ladder.cap_output_tokens > model.max_model_len:
        yield P(f"models[{i}].ladder.capOutputTokens", f"at most the model's maxModelLen ({model.max_model_len})",
                str(ladder.cap_output_tokens))
    if ladder.fallback is None:
        return
    others = {m.name: m for m in spec.models if m.name != model.name}
    fallback = others.get(ladder.fallback)
    if ladder.fallback == model.name:
        yield P(f"models[{i}].ladder.fallback", "another model of peaknight:models", f"'{model.name}' itself")
    elif fallback is None:
        yield P(f"models[{i}].ladder.fallback", "the name of another model in peaknight:models ("
                + ", ".join(others) + ")", show(ladder.fallback), _suggest(ladder.fallback, others))
    elif not ENGINES[fallback.engine].serves_aliases:
        yield P(f"models[{i}].ladder.fallback", "a model whose engine answers to another model's name too ("
                + ", ".join(e.value for e, impl in ENGINES.items() if impl.serves_aliases) + ")",
                f"'{fallback.name}' runs {fallback.engine.value}")


def _check_model(i: int, model: Model, pools: dict, spec: StackSpec, P: Any) -> Iterable[Problem]:
    """The model's own keys first (each stands alone), then what its class and pool make of it:
    an unknown class or pool stops only the checks that need them."""
    if spec.policy.require_image_digests and model.weights_revision is None:
        yield P(f"models[{i}].weightsRevision", "the weights' commit (40 hex) in a "
                f"{spec.policy.stage.value} stack: weights are pinned like images", "nothing")
    if model.mean_context_tokens is not None and model.mean_context_tokens > model.max_model_len:
        yield P(f"models[{i}].meanContextTokens", f"at most the model's maxModelLen ({model.max_model_len:,}): a "
                "request holds no more context than the engine admits", str(model.mean_context_tokens))
    table = profiles.load()
    pool = pools.get(model.pool)
    if pool is None:
        yield P(f"models[{i}].pool", "the name of a pool in peaknight:gpuPools (" + ", ".join(pools) + ")",
                show(model.pool), _suggest(model.pool, pools))
    if model.model_class not in table.model_classes:
        yield P(f"models[{i}].modelClass", "one of " + ", ".join(table.model_classes), show(model.model_class),
                _suggest(model.model_class, table.model_classes))
        return
    if pool is None:
        return
    shapes, found = set(), []
    for gpu in (g for g in pool.gpus if g in table.gpus):  # unknown GPUs are reported on the pool
        row = table.throughput.get(profiles.row_key(model.model_class, gpu, model.engine.value, model.topology.value))
        rows = profiles.rows_for(model.model_class, gpu)
        if row is None and not rows:
            yield P(f"models[{i}].pool", f"a pool whose GPUs all have a {model.model_class} throughput profile",
                    f"pool '{pool.name}' offers {gpu}, which has none")
        elif row is None:
            yield P(f"models[{i}].topology", f"a topology with a {model.model_class} throughput row on {gpu} ("
                    + "; ".join(r.topology.describe() for r in rows) + ")",
                    f"{model.engine.value} {model.topology.value}")
        else:
            shapes.add(row.gpus_per_replica)
            found.append(row)
            yield from _check_context(i, model, row, P)
    if len(shapes) > 1:
        yield P(f"models[{i}].pool", "a pool whose GPUs all give the same GPUs per replica",
                f"{sorted(shapes)} across {', '.join(pool.gpus)}")
    node_gpus = {table.instance_types[t].gpus for t in pool.instance_types if t in table.instance_types}
    if len(shapes) == 1 and len(node_gpus) == 1:  # other shapes are reported on the model or its pool
        serving, gpn = found[0].topology, node_gpus.pop()
        phases = [("", serving.serve)] if serving.serve else [("prefill", serving.prefill), ("decode", serving.decode)]
        for phase, group in phases:
            assert group is not None
            topology = Topology(group.gpus, gpn, phase, serving)
            reason = ENGINES[model.engine].cannot_serve(topology)
            if reason:
                yield P(f"models[{i}].engine", f"an engine that can serve {topology.describe()}",
                        f"{model.engine.value}: {reason}")
                break
            if not spec.policy.allow_unproven:
                problem = next((m.why_unproven() for m in _recipe_matches(spec, model, pool, phase, topology)
                                if not m.proven and m.combination.fabric != recipes.UNDECLARED), "")
                if problem:
                    yield P(f"models[{i}].image", f"a serving combination a public recipe has run "
                            f"(peaknight/data/recipes.yaml; docs/recipes.md), or policy.allowUnproven: true",
                            f"'{model.name}' {phase or 'serving'}: {problem}")
                    break
            if topology.spans_nodes and set(spec.policy.capacity_types) <= {CapacityType.SPOT}:
                yield P("policy.capacityTypes", f"on-demand or reserved capacity for models[{i}] ('{model.name}', "
                        f"{topology.describe()}): one reclaimed spot node recreates the whole group, cold", "spot")
                break
        if not spec.policy.allow_unproven:
            yield from _unproven(i, model, pool, found, gpn, spec, P)


def _unproven(i: int, model: Model, pool: Any, rows: list[profiles.Throughput], gpn: int, spec: StackSpec,
              P: Any) -> Iterable[Problem]:
    """A throughput row no public source measured on the fabric a cluster renders it on (issue 24:
    12, plan/fabric.py) sizes a night on a guess: refused unless policy.allowUnproven says so, one
    line per row and rendered fabric, naming the clusters."""
    where: dict[tuple[tuple[str, str, str, str], str], list[str]] = {}
    for cluster in spec.clusters:
        on = fabric.of(pool, cluster)
        if not on:
            continue   # no instance type of the pool on sale there: reported on the cluster
        for row in rows:
            if not fabric.apply(row, on, gpn).proven:
                where.setdefault((row.key, on), []).append(cluster.name)
    by_key = {row.key: row for row in rows}
    for (key, on), names in where.items():
        row = by_key[key]
        clusters = names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1}"
        yield P("policy.allowUnproven", f"true to plan models[{i}] ('{model.name}') on pool '{pool.name}' in "
                f"{clusters}, whose nodes' fabric is {on}: its {row.gpu} throughput row was measured "
                f"on {row.fabric or 'an unrecorded fabric'} (source: {row.source}) and no public source ran it on "
                f"{on} (docs/operations.md, 'Capacity on the rendered fabric')", "false")


def _recipe_matches(spec: StackSpec, model: Model, pool: Any, phase: str, topology: Topology) -> list[recipes.Match]:
    """The recipe match of one workload in each cluster: the fabric between its nodes is the one the
    instance types its region sells record (fabric.of), over the interconnect the cluster declares
    (theirs, or its provisioner's RDMA). A cluster that sells none of the pool's types is reported
    on the cluster."""
    combos = {recipes.combination(model.engine.value, model.image, phase, topology.spans_nodes,
                                  interconnect(pool, c) if topology.spans_nodes or phase else None, fabric.of(pool, c))
              for c in spec.clusters if fabric.cluster_types(pool, c)}
    return [recipes.match(combo) for combo in sorted(combos, key=repr)]


def _check_context(i: int, model: Model, row: profiles.Throughput, P: Any) -> Iterable[Problem]:
    """The KV-cache bound divides a group's KV tokens by meanContextTokens (plan/memory.py): a
    request larger than the whole cache leaves no request decoding, and the model no rate at all."""
    context = model.mean_context_tokens
    if context is None or context > model.max_model_len:   # the latter is reported once, on the model
        return
    held = int(memory.kv_tokens(row).value)
    if context > held:
        yield P(f"models[{i}].meanContextTokens", f"at most the {held:,} tokens one {row.gpu} group's KV cache "
                f"holds ({row.topology.describe()}): else no request fits and the model decodes nothing",
                str(context))


def _check_shared_instance_types(spec: StackSpec, P: Any) -> Iterable[Problem]:
    """Two pools listing the same instance type compete for its stock: allowed only when both say so."""
    for i, pool in enumerate(spec.gpu_pools):
        if pool.shares_instance_types:
            continue
        for other in spec.gpu_pools:
            shared = [t for t in pool.instance_types if other is not pool and t in other.instance_types]
            if shared:
                yield P(f"gpuPools[{i}].instanceTypes", f"instance types no other pool lists, or "
                        f"sharesInstanceTypes: true on '{pool.name}' and every pool it shares with",
                        f"{', '.join(shared)} also in pool '{other.name}'")


def _check_clouds(spec: StackSpec, P: Any) -> Iterable[Problem]:
    """Every instance type is sold by a cloud some cluster's provisioner launches on, and every
    cluster's region sells at least one instance type of each pool its models use."""
    table = profiles.load()
    clouds = {PROVISIONER_CLOUD[c.provisioner.kind] for c in spec.clusters}
    if None not in clouds:  # an `existing` cluster takes whatever nodes it has
        for i, pool in enumerate(spec.gpu_pools):
            for j, name in enumerate(pool.instance_types):
                itype = table.instance_types.get(name)
                if itype is not None and itype.cloud not in clouds:
                    yield P(f"gpuPools[{i}].instanceTypes[{j}]", "an instance type of the cloud the stack's "
                            f"clusters launch on ({', '.join(sorted(str(c) for c in clouds))})",
                            f"'{name}', sold by {itype.cloud}")
    reserving = [c.name for c in spec.clusters if c.provisioner.selects_reservations]
    if reserving and CapacityType.RESERVED not in spec.policy.capacity_types:
        named = ", ".join(reserving) if len(reserving) <= 3 else f"{len(reserving)} clusters ({reserving[0]} …)"
        yield P("policy.capacityTypes", f"'reserved' among them when clusters select capacity reservations "
                f"({named}; else they go unused)", ", ".join(t.value for t in spec.policy.capacity_types))
    used = {m.pool for m in spec.models}
    for i, cluster in enumerate(spec.clusters):
        yield from _check_provisioner(i, cluster, spec, P)
        cloud = PROVISIONER_CLOUD[cluster.provisioner.kind]
        if cloud is None:
            continue
        for pool in (p for p in spec.gpu_pools if p.name in used):
            own = [table.instance_types[t] for t in pool.instance_types
                   if t in table.instance_types and table.instance_types[t].cloud == cloud]
            if own and not any(t.sold_in(cluster.region) for t in own):
                where = "; ".join(f"{t.name} in {', '.join(t.regions)}" for t in own)
                yield P(f"clusters[{i}].region", f"a region that sells pool '{pool.name}''s {cloud} GPUs "
                        f"({where})", show(cluster.region))
            elif not own:
                yield P(f"clusters[{i}].provisioner.kind", f"a provisioner whose cloud sells pool "
                        f"'{pool.name}''s instance types", f"'{cluster.provisioner.kind}' ({cloud})")


def _check_provisioner(i: int, cluster: Any, spec: StackSpec, P: Any) -> Iterable[Problem]:
    """Settings that only make sense against the rest of the stack (zones, pools, capacity types)."""
    settings = cluster.provisioner
    if isinstance(settings, VolcengineVkeSettings):
        missing = [z for z in cluster.zones if z not in settings.subnets]
        extra = [z for z in settings.subnets if z not in cluster.zones]
        if missing or extra:
            found = ([f"none for {', '.join(missing)}"] if missing else []) + (
                [f"a subnet for {', '.join(extra)}, not a zone of the cluster"] if extra else [])
            yield P(f"clusters[{i}].provisioner.subnets", f"one subnet per zone of the cluster "
                    f"({', '.join(cluster.zones)})", "; ".join(found))
        if settings.rdma is not None and set(settings.rdma.hpc_clusters) != set(cluster.zones):
            yield P(f"clusters[{i}].provisioner.rdma.hpcClusters", f"one HPC cluster per zone of the cluster "
                    f"({', '.join(cluster.zones)})", ", ".join(settings.rdma.hpc_clusters) or "none")
        types = spec.policy.capacity_types
        if CapacityType.SPOT in types or CapacityType.ON_DEMAND not in types:
            yield P("policy.capacityTypes", f"on-demand and no spot when cluster '{cluster.name}' uses "
                    "volcengine-vke (a VKE node pool launches pay-as-you-go instances, no spot)",
                    ", ".join(t.value for t in types))
    elif isinstance(settings, ExistingSettings):
        pools = [p.name for p in spec.gpu_pools]
        for j, group in enumerate(settings.groups):
            if group.pool not in pools:
                yield P(f"clusters[{i}].provisioner.groups[{j}].pool", "the name of a pool in "
                        f"peaknight:gpuPools ({', '.join(pools)})", show(group.pool), _suggest(group.pool, pools))
