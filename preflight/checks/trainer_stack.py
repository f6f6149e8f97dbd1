"""The framework that launches the run, and the packages it runs with, as installed here: versions
from package metadata (ctx.probes.packages), never imported."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..registry import Context, Rule, check
from ..result import Outcome, skipped
from ._relations import Findings
from .stack import install_hint, satisfies

DISTRIBUTIONS = {"verl": "verl", "trl": "trl", "openrlhf": "openrlhf"}  # framework -> its pip name


def requirements(framework: str) -> dict[str, dict[str, str]]:
    """The framework importer's REQUIREMENTS table ({} when its module is absent)."""
    try:
        module = importlib.import_module(f"preflight.frameworks.{framework}")
    except ModuleNotFoundError:
        return {}
    table = getattr(module, "REQUIREMENTS", {})
    return table if isinstance(table, dict) else {}


def _not_needed(framework: str, config: Mapping[str, Any], package: str) -> bool:
    """A declared package this configuration does not use: verl's other rollout engine."""
    if framework != "verl" or package not in ("vllm", "sglang"):
        return False
    node: Any = config
    for part in ("actor_rollout_ref", "rollout", "name"):
        node = node.get(part) if isinstance(node, Mapping) else None
    # only an engine the config names rules the other out: without a name both are checked
    return isinstance(node, str) and node != package


@check("trainer.stack", "The framework and its packages are installed at versions it supports", "node", rules=(
    Rule("trainer.framework", ("trainer.version", "machine: installed packages (metadata)"), "fail",
         "the framework is installed, and vLLM / transformers / torch / ray meet what its version declares"),
    Rule("trainer.version", ("machine: installed packages (metadata)",), "warn",
         "the installed framework is the version the spec was imported against"),
))
def framework_stack(ctx: Context) -> Outcome:
    """For a run a framework launches (trainer.framework): the framework is installed here, and the
    packages its version declares (REQUIREMENTS in preflight/frameworks/<framework>.py: vLLM,
    transformers, torch, ray, ... from the framework's own requirements) are installed at versions
    inside those ranges (verl #245: an unsupported vLLM fails at rollout init; TRL #3304; verl
    #5937). Versions are read from package metadata, nothing is imported. A missing or out-of-range
    package fails; an installed framework whose version differs from trainer.version (the defaults
    the spec was resolved with) warns: re-import to resolve against it."""
    framework = ctx.spec.framework
    if framework is None:
        return skipped("the built-in runner launches this run (no trainer section); stack.* checks its packages")
    dist = DISTRIBUTIONS.get(framework, framework)
    installed = ctx.probes.packages.version(dist)
    f = Findings()
    if installed is None:
        f.fail(f"{framework} is not installed here: the launch command would fail at its first import",
               f"pip install {dist}" + (f"=={ctx.spec.get('trainer.version')}" if ctx.spec.get("trainer.version")
                                         else ""))
        return f.outcome(f"{framework} not installed", f"{framework} installed")
    wanted = ctx.spec.get("trainer.version")
    if wanted and str(wanted) != installed:
        f.warn(f"{framework} {installed} is installed, the spec was resolved with {framework} {wanted}'s defaults",
               f"re-import the configuration here (`preflight import {framework} SOURCE`), or install {wanted}")
    table = requirements(framework)
    declared = table.get(installed)
    if declared is None:
        f.warn(f"no declared requirements are known for {framework} {installed} "
               f"(known: {', '.join(sorted(table)) or 'none'})",
               "check its package pins by hand, or update rl-preflight")
        declared = {}
    config = ctx.spec.get("trainer.config") or {}
    checked = []
    for package, specifier in declared.items():
        if _not_needed(framework, config, package):
            continue
        version = ctx.probes.packages.version(package)
        checked.append(f"{package} {version or 'missing'}")
        if version is None:
            f.fail(f"{package} is not installed ({framework} {installed} needs {package}{specifier})",
                   install_hint(package, specifier))
        elif not satisfies(version, specifier):
            f.fail(f"{package} {version} is outside {framework} {installed}'s {specifier}",
                   install_hint(package, specifier))
    found = f"{framework} {installed}" + (f"; {', '.join(checked)}" if checked else "")
    return f.outcome(found, f"{framework} installed with the package versions it declares")
