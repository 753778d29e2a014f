"""One timed run under Pulumi's mocks: the kit's program, or its bare floor. bench/program runs
each in a fresh interpreter (`python bench/mocked.py program|floor STACK RECORD`) so neither
inherits the other's warm imports or caches; it prints {"seconds": ..., "resources": ...}.

The floor registers exactly the pulumi-kubernetes resources the program registered (read from
RECORD, which the program run writes), with the same inputs and providers, through the same typed
classes, and nothing else: no config, planning, builders, components or options.
"""
from __future__ import annotations

import importlib
import inspect
import json
import pickle
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime import rpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pulumi_harness import Recorded, run_program, run_under_mocks  # noqa: E402

PROVIDER = "pulumi:providers:kubernetes"
SECRET_SIG = rpc._special_sig_key  # how mocks hand a secret input back to the program


def is_kubernetes(resource: Recorded) -> bool:
    return resource.typ == PROVIDER or resource.typ.startswith("kubernetes:")


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _value(value: Any, provider: bool) -> Any:
    """A recorded input as a program would pass it: secrets become secret Outputs again, and a
    provider's non-string settings, which Pulumi sends JSON-encoded, are decoded."""
    if isinstance(value, dict) and SECRET_SIG in value:
        return pulumi.Output.secret(value["value"])
    if provider and isinstance(value, str):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        return value if isinstance(decoded, str) else decoded
    return value


def _constructor(typ: str) -> Callable[..., pulumi.Resource] | None:
    """The typed pulumi-kubernetes class of a type token, from Pulumi's own module registry."""
    if typ == PROVIDER:
        return k8s.Provider
    pkg, mod, _ = typ.split(":")
    module = rpc.get_resource_module(pkg, mod, "")
    name = module.mod_info["classes"].get(typ) if module is not None else None
    return getattr(importlib.import_module(module.mod_info["fqn"]), name) if name else None


def register(resource: Recorded, providers: dict[str, pulumi.ProviderResource]) -> pulumi.Resource:
    """Declare one recorded resource again. A typed class gets the inputs it takes (it fills in
    apiVersion, kind and its own defaults itself); a custom kind becomes a CustomResource."""
    opts = pulumi.ResourceOptions(provider=providers.get(resource.provider or ""))
    inputs = {_snake(k): _value(v, resource.typ == PROVIDER) for k, v in resource.inputs.items()}
    ctor = _constructor(resource.typ)
    if ctor is None:
        return k8s.apiextensions.CustomResource(resource.name, opts=opts, **inputs)
    accepted = inspect.signature(ctor._internal_init).parameters  # type: ignore[attr-defined]
    return ctor(resource.name, opts=opts, **{k: v for k, v in inputs.items() if k in accepted})


def floor(resources: list[Recorded]) -> None:
    """The bare program: providers first (objects need them), then every object."""
    providers: dict[str, pulumi.ProviderResource] = {}
    for r in resources:
        if r.typ == PROVIDER:
            providers[r.name] = register(r, providers)  # type: ignore[assignment]
    for r in resources:
        if r.typ != PROVIDER:
            register(r, providers)


def main(mode: str, stack: Path, record: Path) -> dict[str, float]:
    if mode == "program":
        start = time.perf_counter()
        mocks = run_program(stack, preview=True)  # `pulumi up` refuses broadcast's placeholder digests
        seconds = time.perf_counter() - start
        record.write_bytes(pickle.dumps([r for r in mocks.resources if is_kubernetes(r)]))
    else:
        resources = pickle.loads(record.read_bytes())
        start = time.perf_counter()
        mocks = run_under_mocks(lambda: floor(resources), stack.stem.split(".")[-1], {})
        seconds = time.perf_counter() - start
        if _declared(mocks.resources) != _declared(resources):
            raise SystemExit("the floor did not declare the program's resources with the same inputs")
    return {"seconds": seconds, "resources": len(mocks.resources),
            "kubernetes": sum(is_kubernetes(r) for r in mocks.resources)}


def _declared(resources: list[Recorded]) -> dict[tuple[str, str], dict]:
    return {(r.typ, r.name): r.inputs for r in resources if is_kubernetes(r)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))))
