"""The software stack: Python, each package the spec names, and torch's CUDA build.

Versions come from installed package metadata; nothing here imports torch, transformers,
accelerate or ray (importing torch alone takes seconds).
"""

from __future__ import annotations

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ..registry import CheckDef, Context, Rule, check, family
from ..result import Outcome, failed, passed, skipped
from ..spec import Spec
from ._util import gpus_required


def any_version(spec: str) -> bool:
    return spec.strip() in ("", "*")


def satisfies(version: str, specifier: str) -> bool:
    if any_version(specifier):
        return True
    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def install_hint(name: str, specifier: str) -> str:
    req = name if any_version(specifier) else f"{name}{specifier}"
    return f"pip install '{req}'"


@check("stack.python", "Python version", "node", rules=(
    Rule("stack.python", ("machine: this Python",), "fail", "this interpreter's version inside the specifier"),
))
def python_version(ctx: Context) -> Outcome:
    """This interpreter's version against stack.python (default >=3.10)."""
    want = str(ctx.spec.get("stack.python"))
    have = ctx.probes.packages.python_version()
    if not satisfies(have, want):
        return failed(f"Python {have}", f"Python {want}", f"run the preflight and the run with a Python {want}")
    return passed(f"Python {have}", f"Python {want}")


@family("stack.<package>", "Package installed at a matching version", "node")
def packages(spec: Spec) -> list[CheckDef]:
    """One check per package in stack.packages: installed, and its version inside the specifier.
    Defaults (docs/reference.md section 1): torch>=2.0, transformers>=4.30, accelerate>=0.20, wandb, ray>=2.0.
    A missing package fails with the pip command that installs it. Set a package to null in the
    spec to drop it from the list."""
    defs = []
    for name, specifier in sorted(spec.get("stack.packages", {}).items()):
        defs.append(CheckDef(
            id=f"stack.{name.lower().replace('-', '_')}",
            title=f"{name} {specifier or '(any version)'}".strip(),
            level="node",
            fn=_package_check(name, specifier or ""),
            explain=packages.__doc__ or "",
        ))
    return defs


def _package_check(name: str, specifier: str):  # type: ignore[no-untyped-def]
    def run(ctx: Context) -> Outcome:
        expected = f"{name}{'' if any_version(specifier) else ' ' + specifier}"
        have = ctx.probes.packages.version(name)
        if have is None:
            return failed("not installed", expected, install_hint(name, specifier))
        if not satisfies(have, specifier):
            return failed(f"{name} {have}", expected, install_hint(name, specifier))
        return passed(f"{name} {have}", expected)

    return run


@check("stack.torch_build", "torch build matches the hardware", "node", rules=(
    Rule("hardware.gpu_required", ("hardware.gpus_per_node", "machine: torch's build"), "fail",
         "a GPU run needs a CUDA build of torch"),
))
def torch_build(ctx: Context) -> Outcome:
    """A GPU run needs a CUDA build of torch; a CPU build (+cpu) would silently train on CPU or
    crash at the first .cuda(). Read from torch's files without importing it."""
    build = ctx.probes.packages.torch_build()
    if build is None:
        return skipped("torch is not installed (see stack.torch)")
    needs_cuda = gpus_required(ctx)
    found = f"torch {build.version}, " + (f"CUDA {build.cuda}" if build.cuda else "CPU-only build")
    if needs_cuda and build.cuda is None:
        return failed(found, "a CUDA build of torch",
                      "install a CUDA build of torch (a +cuXXX wheel) for a CUDA version the driver supports")
    return passed(found, "a CUDA build" if needs_cuda else "any build (no GPUs required)")


# Each metric sink and the package its runner-side writer imports (runner.events.make_sinks):
# wandb imports wandb; tensorboard imports torch.utils.tensorboard, which needs the tensorboard
# package. jsonl and stdout need nothing beyond the runner.
SINK_PACKAGES = {"wandb": "wandb", "tensorboard": "tensorboard"}


@check("stack.sinks", "Every metric sink can be written", "node", rules=(
    Rule("monitoring.sinks", ("stack.packages", "machine: installed packages"), "fail",
         "each sink's package is installed (read from package metadata, never imported)"),
))
def sinks(ctx: Context) -> Outcome:
    """Each of monitoring.sinks whose writer needs a package has it installed: wandb needs wandb,
    tensorboard needs tensorboard. The runner refuses to start when a sink cannot be opened; this
    says so before the launch. Read from installed package metadata
    (never imported); a version that stack.packages pins is checked by stack.<package>."""
    wanted = [name for name in ctx.spec.get("monitoring.sinks") or [] if name in SINK_PACKAGES]
    if not wanted:
        return skipped("no sink needs a package (jsonl and stdout come with the runner)")
    found: list[str] = []
    missing: list[str] = []
    for sink in wanted:
        package = SINK_PACKAGES[sink]
        version = ctx.probes.packages.version(package)
        (found if version else missing).append(f"{package} {version}" if version else package)
    expected = ", ".join(SINK_PACKAGES[s] for s in wanted) + " installed"
    if missing:
        return failed(f"not installed: {', '.join(missing)}", expected,
                      f"{install_hint(missing[0], ctx.spec.get('stack.packages', {}).get(missing[0]) or '')}"
                      f" (or remove {', '.join(s for s in wanted if SINK_PACKAGES[s] in missing)} from "
                      "monitoring.sinks); the runner would turn the sink off and log nowhere")
    return passed(", ".join(found), expected)
