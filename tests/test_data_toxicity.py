"""data.toxicity's default detector: precise on real clean text, every planted obscenity caught, the
same in `preflight check` and `preflight data clean`, and the RE2 prefilter never loses a match."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import real_datasets as rd
from hypothesis import given, settings
from hypothesis import strategies as st

from preflight.cli import main
from preflight.data.toxicity import (
    DEFAULT_LEXICON,
    Matcher,
    load_lexicon,
    matcher_for,
    scan,
    scan_column,
)

# Unambiguous obscenities and slurs, each as it is written in the wild: obscene or a slur in every
# use. "tits", one of the seven words of the FCC case, is not here: it is also a family of birds.
PLANTED = (
    "fuck", "fucking", "Fucked", "fucker", "motherfucker", "what the fuck", "fuckwit", "clusterfuck",
    "shit", "shitty", "bullshit", "horseshit", "dipshit", "piece of shit", "holy shit", "SHIT",
    "cunt", "cunts", "cocksucker", "piss", "piss off", "pissed off", "asshole", "assholes", "dickhead",
    "douchebag", "son of a bitch", "son-of-a-bitch", "goddamn", "bollocks", "wanker", "twat",
    "blowjob", "handjob", "jerk off", "jizz", "dildo", "slut", "whore", "gangbang", "nigger", "nigga",
    "faggot", "fag", "kike", "wetback", "raghead", "towelhead", "f*ck", "sh*t", "f**king",
    "motherf*cker", "sh!t", "a**hole", "b*tch", "kiss my ass", "suck my dick", "bitch ass",
)
# Words of clean text that better-profanity's list flagged (issue 13 names the first eight), and
# words an obscenity hides in.
ORDINARY = (
    "She put the pot on the stove.", "The fat content is 3 grams.", "A facial costs $40.",
    "He bought rum and sugar.", "Pull the weeds in the garden.", "Kill the process with SIGTERM.",
    "Cut a strip of paper 3 cm wide.", "Willy has 4 apples.", "Balaam rode his ass to the king.",
    "The cock crowed at dawn.", "Dick Cheney was vice president.", "Moby Dick is a novel.",
    "Blue tits nest in the spring.", "Add shitake mushrooms.", "Scunthorpe is a town.",
    "Keep the tent spic and span.", "She graduated cum laude.", "A cocktail of fruit juice.",
    "The assessment was fair.", "A bass guitar.", "The bitch had six puppies.", "Sussex and Essex.",
    "Hello, Mr. Cockburn.", "The penis and the vagina are organs.", "a retarded ignition timing",
)


def planted_rows() -> list[dict[str, Any]]:
    """Each planted obscenity in a sentence appended to a clean ASDiv row."""
    base = rd.asdiv()
    frames = ("{} this problem is hard.", "Well, {}, what is the total?", "The answer is {}!")
    return [{**base[i], "id": f"planted-{i}", "prompt": base[i]["prompt"] + " " + frames[i % 3].format(term)}
            for i, term in enumerate(PLANTED)]


def default() -> Matcher:
    return matcher_for(None, ())[0]


def test_every_planted_obscenity_is_caught_and_nothing_else_in_its_row() -> None:
    m = default()
    for row, term in zip(planted_rows(), PLANTED, strict=True):
        hits = m.hits(row["prompt"])
        assert hits and all(h in term.lower() for h in hits), (term, hits)  # the obscenity, nothing of the row


@pytest.mark.parametrize("text", ORDINARY)
def test_words_with_an_ordinary_meaning_are_not_flagged(text: str) -> None:
    assert default().hits(text) == []


def test_no_row_of_clean_math_and_code_datasets_is_flagged() -> None:
    m = default()
    for name in ("ASDiv", "HumanEval"):
        rows = rd.DATASETS[name][1]()
        texts = [f"{r['prompt']} {r['answer']}" for r in rows]
        assert scan(texts, m)[0] == [], name


def test_the_shipped_list_has_no_ordinary_word_that_the_header_rules_out() -> None:
    terms = set(load_lexicon(DEFAULT_LEXICON))
    assert not terms & {"ass", "cock", "dick", "pussy", "tits", "bastard", "bitch", "hell", "damn", "sex", "kill",
                        "pot", "fat", "spic", "cum", "homo", "dyke", "retard", "shit*"}
    assert {"fuck*", "shit", "cunt*", "son of a bitch"} <= terms


def test_term_syntax_wildcards_phrases_and_masks() -> None:
    m = Matcher(["fuck*", "*fucker", "son of a bitch", "f*ck", "bad word"])
    assert m.hits("FUCKING hell, motherfucker") == ["fucking", "motherfucker"]
    assert m.hits("son  of\ta-bitch") == ["son of a-bitch"]
    assert Matcher(["f---ing", "son of a bitch"], {"son of a bitch"}).hits("f---ing son-of-a-bitch") == ["f---ing"]
    assert m.hits("f*ck it; f*cking no") == ["f*ck"]  # a * inside a term is literal
    assert m.hits("a bad   word and badword") == ["bad word"]
    assert m.hits("unfuckable") == []  # no wildcard in front: a whole word only
    allowed = Matcher(["fuck*"], {"fucking"})
    assert allowed.hits("fucking fucked") == ["fucked"]


def _column(texts: list[str | None], chunks: int = 2) -> pa.ChunkedArray:
    cut = len(texts) // chunks
    return pa.chunked_array([pa.array(texts[:cut], pa.string()), pa.array(texts[cut:], pa.string())])


def test_scan_column_agrees_with_the_plain_scan_on_real_and_planted_text() -> None:
    m = default()
    texts: list[str | None] = [r["prompt"] for r in rd.mmlu()] + [None, ""] + \
        [r["prompt"] for r in planted_rows()]
    flagged, terms = scan_column(_column(texts), m)
    assert (flagged, terms) == scan(texts, m)
    assert len(flagged) >= len(PLANTED)


pieces = st.sampled_from(["fuck", "FUCK", "shit", "son", "of", "a", "bitch", "f*ck", "sh!t", "İ", "ı", "é", "x",
                          "mother", "ing", "er", "-", " ", "\u00a0", "\u3000", "\t", "_", "9", ".", "ſ", "Σ",
                          "σ", "ς", "i\u0307", "sI"])
# A user's list with the letters Python and Arrow lower-case differently.
USER_TERMS = ["shi̇t", "όσος", "mother*", "a.b", "x+"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(pieces, max_size=12).map("".join), min_size=1, max_size=8))
def test_the_re2_prefilter_never_loses_a_match(texts: list[str]) -> None:
    for m in (default(), Matcher(USER_TERMS)):
        assert scan_column(_column(list(texts)), m) == scan(texts, m)


def test_the_prefilter_finds_letters_that_lower_case_differently() -> None:
    m = Matcher(USER_TERMS)
    texts = ["SHİT here", "ΌΣΟΣ", "όσοσ", "a.b and x+"]
    assert scan(texts, m)[0] == [0, 1, 3]
    assert scan_column(_column(texts), m) == scan(texts, m)


def test_check_and_clean_flag_the_same_rows_with_the_same_default(tmp_path: Path) -> None:
    rows = rd.asdiv()[:400] + planted_rows()
    paths = rd.write_split_files(tmp_path / "data", rows)
    spec = rd.write_spec(tmp_path, paths, "math")
    report = tmp_path / "report.json"
    assert main(["check", str(spec), "--only", "data.toxicity", "--format", "json", "--output", str(report),
                 "--no-attest"]) in (0, 1)
    result = json.loads(report.read_text(encoding="utf-8"))["results"][0]
    assert result["id"] == "data.toxicity" and result["status"] == "fail"
    assert result["found"].startswith(f"{len(PLANTED)} of {len(rows):,} rows")
    assert "unambiguous obscenities" in result["evidence"]["lexicon"]
    dropped = 0
    for name, path in paths.items():
        out = tmp_path / f"clean-{name}"
        assert main(["data", "clean", str(path), "--out", str(out)]) == 0
        q = [json.loads(x) for x in (out / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]
        assert {x["reason"] for x in q} <= {"lexicon"}
        dropped += len(q)
    assert dropped == len(PLANTED)


def test_explain_states_the_detector_and_its_measured_precision_and_recall(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "data.toxicity"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "unambiguous English obscenities and slurs" in text
    assert "precision and recall 100 %" in text and "better-profanity's list flagged 4.9 %" in text
    # The numbers quoted are the ones the tests hold: the planted set, and the real rows flagged.
    from test_data_real import REAL_OBSCENE_ROWS

    assert f"{len(PLANTED)} of {len(PLANTED)} planted obscenities caught" in text
    assert f"{sum(REAL_OBSCENE_ROWS.values())} rows flagged, each really holding one of the words" in text
