"""Stratification statistics, the lexicon matcher and version-control detection."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from preflight.data.stats import chi2_sf, stratification
from preflight.data.toxicity import Matcher, default_lexicon_path, load_lexicon, scan
from preflight.data.vcs import file_digest, tracking


@pytest.mark.parametrize("x", [0.1, 1.0, 2.5, 7.0, 30.0, 120.0])
def test_chi2_sf_matches_the_closed_form_for_two_degrees(x):
    assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-9)


@pytest.mark.parametrize("x,dof,p", [(3.841458820694124, 1, 0.05), (5.991464547107979, 2, 0.05),
                                     (9.487729036781154, 4, 0.05), (15.08627246938899, 5, 0.01)])
def test_chi2_sf_at_textbook_critical_values(x, dof, p):
    assert chi2_sf(x, dof) == pytest.approx(p, rel=1e-6)


def test_identical_mixes_have_no_deviation():
    counts = {"train": {"easy": 900, "hard": 900}, "val": {"easy": 50, "hard": 50}}
    st = stratification(counts)
    assert st.worst[2] == 0 and st.chi2 == 0 and st.cramers_v == 0 and st.p_value == 1.0


def test_skewed_split_is_measured():
    counts = {"train": {"easy": 600, "medium": 600, "hard": 600}, "val": {"hard": 100}}
    st = stratification(counts)
    split, level, dev = st.worst
    assert (split, level) == ("val", "hard")
    assert dev == pytest.approx(1 - 700 / 1900)
    assert st.cramers_v > 0.3 and st.p_value < 1e-10 and st.dof == 2


def test_matcher_matches_whole_words_case_insensitively():
    m = Matcher(["ass", "bad word"], allow={"ass"})
    assert m.hits("That is a BAD  word") == ["bad word"]  # any whitespace between a phrase's words
    assert m.hits("a badword") == []
    assert m.hits("a Bad word, indeed") == ["bad word"]
    assert m.hits("classic assessment ass") == []  # allow-listed, and never inside words
    m2 = Matcher(["ass"])
    assert m2.hits("classic assessment") == [] and m2.hits("an ass.") == ["ass"]
    flagged, terms = scan(["clean", None, "an ass", "ass ass"], m2)
    assert flagged == [2, 3] and terms == {"ass": 3}


def test_default_lexicon_ships_with_preflight():
    path = default_lexicon_path()
    assert path.is_file() and len(load_lexicon(path)) > 100


def test_tracking_by_git_lfs_dvc_or_nothing(tmp_path: Path):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    (tmp_path / "a.parquet").write_bytes(b"x")
    (tmp_path / "b.jsonl").write_text("{}\n")
    (tmp_path / "c.jsonl").write_text("{}\n")
    (tmp_path / "c.jsonl.dvc").write_text("outs:\n- path: c.jsonl\n")
    (tmp_path / "d.jsonl").write_text("{}\n")
    git("add", "d.jsonl")
    assert tracking(tmp_path / "a.parquet") == "git-lfs"
    assert tracking(tmp_path / "b.jsonl") is None
    assert tracking(tmp_path / "c.jsonl") == "dvc"
    assert tracking(tmp_path / "d.jsonl") == "git"


def test_file_digest_of_a_file_and_a_folder(tmp_path: Path):
    f = tmp_path / "x.jsonl"
    f.write_text("abc")
    d = file_digest(f)
    assert d["bytes"] == 3 and d["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "data.arrow").write_bytes(b"12")
    before = file_digest(folder)
    (folder / "data.arrow").write_bytes(b"13")
    assert file_digest(folder)["sha256"] != before["sha256"]
