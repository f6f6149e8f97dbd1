"""The dataset's split files: present, readable, and real data rather than Git LFS pointers."""

from __future__ import annotations

from pathlib import Path

from ..engine import Context, check
from ..result import Outcome, failed, passed, skipped
from ._util import gb

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
SPLITS = ("train", "val", "test")


@check("data.files", "Dataset split files are present", "node")
def split_files(ctx: Context) -> Outcome:
    """Each declared split (data.train / val / test) is a readable, non-empty file, not a Git LFS
    pointer that was never pulled. Without a data section, the math domain uses the runner's
    built-in generated task; code and chat need data."""
    declared = {k: ctx.spec.get(f"data.{k}") for k in SPLITS if ctx.spec.get(f"data.{k}")}
    domain = ctx.spec.get("run.domain")
    if not declared:
        if domain == "math":
            return skipped("no data files declared: the runner generates its built-in arithmetic task")
        return failed("no data files declared", "data.train (and data.val)",
                      f"the {domain} domain has no built-in task; set data.train and data.val")
    problems, sizes = [], {}
    for split, name in declared.items():
        path = Path(name)
        if not path.is_file():
            problems.append(f"{split}: {path} {'is a directory' if path.is_dir() else 'does not exist'}")
            continue
        try:
            with path.open("rb") as fh:
                head = fh.read(len(LFS_POINTER_PREFIX))
        except OSError as exc:
            problems.append(f"{split}: {path} cannot be read ({exc.strerror})")
            continue
        size = path.stat().st_size
        sizes[split] = gb(size)
        if size == 0:
            problems.append(f"{split}: {path} is empty")
        elif head == LFS_POINTER_PREFIX:
            problems.append(f"{split}: {path} is a Git LFS pointer, not the data (run `git lfs pull`)")
    if problems:
        return failed("; ".join(problems), "every declared split readable and non-empty",
                      "fix the paths in the data section, or fetch the files", sizes=sizes)
    return passed(", ".join(f"{k} {v}" for k, v in sizes.items()), "every declared split readable and non-empty")
