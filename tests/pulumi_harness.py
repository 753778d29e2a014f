"""Run the Pulumi program under Pulumi's own mocks and record every resource it registers."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pulumi

from peaknight.spec import config


def normalise(value: Any) -> Any:
    """Mocks hand numbers back as floats (8 -> 8.0): make integral floats ints again."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


@dataclass
class Recorded:
    """A resource as the engine saw it (mocks) plus the options the program gave it (transform)."""

    typ: str
    name: str
    inputs: dict
    custom: bool
    parent: str | None = None        # parent resource's name; None for children of the stack
    provider: str | None = None      # explicit provider's name, if the resource got one
    protect: bool = False
    depends_on: tuple[str, ...] = ()
    ignore_changes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()    # the types of the resource's aliases
    provider_ref: str = ""           # the provider the engine got (explicit or inherited): "urn::id"


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    resources: list[Recorded] = field(default_factory=list)

    options: dict[tuple[str, str], dict] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(Recorded(args.typ, args.name, normalise(dict(args.inputs)), args.custom,
                                       provider_ref=args.provider or "",
                                       **self.options.get((args.typ, args.name), {})))
        return [f"{args.name}_id", args.inputs]

    def record_options(self, args: pulumi.ResourceTransformationArgs) -> None:
        """Stack transformation: remember parent, provider, protect, depends_on of each resource."""
        opts = args.opts
        self.options[(args.type_, args.name)] = dict(
            parent=None if type(opts.parent).__name__ == "Stack" else getattr(opts.parent, "_name", None),
            provider=getattr(opts.provider, "_name", None),
            protect=bool(opts.protect),
            depends_on=tuple(getattr(d, "_name", str(d)) for d in (opts.depends_on or [])),
            ignore_changes=tuple(opts.ignore_changes or ()),
            aliases=tuple(a.type_ for a in (opts.aliases or []) if isinstance(a, pulumi.Alias)),
        )
        return None

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def stack_config(path: Path, kubeconfigs: bool = True) -> dict[str, str]:
    """A stack file's `peaknight:` keys as Pulumi passes config to a program: JSON strings."""
    raw = config.read_stack_file(path)
    out = {f"{config.NAMESPACE}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
    if kubeconfigs:
        for cluster in raw["clusters"]:
            out[f"{config.NAMESPACE}:{config.KUBECONFIG_PREFIX}{cluster['name']}"] = "apiVersion: v1\nkind: Config\n"
    return out


def run_program(path: Path, kubeconfigs: bool = True, secret: bool = True,
                extra: dict[str, str] | None = None, preview: bool = False) -> RecordingMocks:
    """Run peaknight.pulumi.program.main() for the stack at `path` under mocks; return what
    registered. Kubeconfigs are Pulumi secrets (as `pulumi config set --secret` makes them) unless
    `secret` is False; `extra` adds config keys as Pulumi would pass them; `preview` runs it as
    `pulumi preview` does (else as `pulumi up`, which refuses a broadcast stage's placeholders)."""
    def main() -> None:
        from peaknight.pulumi import program
        program.main()

    config_ = {**stack_config(path, kubeconfigs), **(extra or {})}
    return run_under_mocks(main, path.stem.split(".")[-1], config_, secret_keys(config_) if secret else [],
                           preview=preview)


def secret_keys(config_: dict[str, str]) -> list[str]:
    """The keys `pulumi config set --secret` would have set: kubeconfigs and cloud credentials."""
    prefixes = tuple(f"{config.NAMESPACE}:{p}" for p in config.SECRET_PREFIXES)
    return [k for k in config_ if k.startswith(prefixes)]


def run_under_mocks(body: Callable[[], Any], stack: str, config_: dict[str, str],
                    secret_keys: list[str] | None = None, project: str = "peaknight",
                    preview: bool = False) -> RecordingMocks:
    """Run `body` as a Pulumi program under recording mocks with `config_` set (`secret_keys`
    marked secret); an Output `body` returns is awaited, so checks inside its apply run. bench/program
    runs the kit's program and its bare floor through here, so both pay the same mock costs."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview)
    pulumi.runtime.set_all_config(config_, secret_keys or [])

    @pulumi.runtime.test
    def run():
        pulumi.runtime.register_stack_transformation(mocks.record_options)
        return body()

    run()
    return mocks
