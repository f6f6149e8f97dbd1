"""Bad specs of every kind exit 2 with a message naming the file, the place and the rule; never a traceback.

The parametrized cases pin the message for each kind of mistake; the property-based tests feed
thousands of mutated copies of examples/cpu-smoke.yaml through `preflight validate` and hold the
tool to the same contract whatever the mutation produced.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from preflight.cli import main
from preflight.rundir import ATTESTATION_SUFFIX

GOOD = "run:\n  name: bad-spec-test\ntraining:\n  batch_size: 16\n  group_size: 2\n"


@dataclass(frozen=True)
class Bad:
    """A bad spec and what its message must contain besides the file's name."""

    content: str | bytes | None  # None: no file; "<dir>": a directory
    location: str | None  # regex after the file name: a line (":4:") or a JSON path; None: file-level
    phrase: str  # the rule in brackets, or the file-level reason


CASES: dict[str, Bad] = {
    "yaml-unbalanced-bracket": Bad("run:\n  name: [a\n  stage: small\n", r":\d+: \$", "[yaml-syntax]"),
    "yaml-bad-indentation": Bad("run:\n  name: a\n    stage: small\n", r":3: \$", "[yaml-syntax]"),
    "yaml-tab-indentation": Bad("run:\n\tname: a\n", r":2: \$", "[yaml-syntax]"),
    "yaml-unclosed-quote": Bad("run:\n  name: 'a\n", r":\d+: \$", "[yaml-syntax]"),
    "yaml-two-documents": Bad("run:\n  name: a\n---\nrun:\n  name: b\n", r":3: \$", "[yaml-syntax]"),
    "duplicate-key": Bad(GOOD + "  batch_size: 32\n", r":6: \$", "[duplicate-key]"),
    "wrong-type": Bad(GOOD.replace("16", '"big"'), r":4: \$\.training\.batch_size", "[type]"),
    "wrong-type-section": Bad("run:\n  name: a\ntraining: 16\n", r":3: \$\.training", "[type]"),
    "unknown-key-top": Bad(GOOD + "trainer:\n  x: 1\n", r":6: \$\.trainer", "[additionalProperties]"),
    "unknown-key-nested": Bad(GOOD + "  batchsize: 8\n", r":6: \$\.training\.batchsize",
                              "[additionalProperties]"),
    "batch-size-zero": Bad(GOOD.replace("16", "0"), r":4: \$\.training\.batch_size", "[minimum]"),
    "learning-rate-negative": Bad(GOOD + "  learning_rate: -1\n", r":6: \$\.training\.learning_rate",
                                  "[exclusiveMinimum]"),
    "learning-rate-minus-inf": Bad(GOOD + "  learning_rate: -.inf\n", r":6: \$\.training\.learning_rate",
                                   "[finite-number]"),
    "clip-low-too-high": Bad(GOOD + "  clip_low: 5\n", r":6: \$\.training\.clip_low", "[maximum]"),
    "enum-typo": Bad("run:\n  name: a\n  stage: smal\n", r":3: \$\.run\.stage", "[enum]"),
    "missing-run-name": Bad("run:\n  stage: small\n", r":1: \$\.run", "[required]"),
    "missing-run": Bad("training:\n  batch_size: 16\n", r":1: \$", "[required]"),
    "run-name-pattern": Bad("run:\n  name: ../escape\n", r":2: \$\.run\.name", "[pattern]"),
    "top-level-list": Bad("- run\n- training\n", r":1: \$", "[type]"),
    "top-level-scalar": Bad("just some words\n", r":1: \$", "[type]"),
    "only-comments": Bad("# nothing here\n", r":1: \$", "[type]"),
    "unknown-waiver-check": Bad(GOOD + "waivers:\n  - check: hw.gpu.vrma\n    reason: measured by hand\n",
                                r":7: \$\.waivers\[0\]\.check", "[unknown-check]"),
    "unknown-severity-check": Bad(GOOD + "checklist:\n  severity:\n    config.lr.rnage: off\n",
                                  r":\d+: \$\.checklist\.severity", "[unknown-check]"),
    "missing-file": Bad(None, None, "no such file"),
    "empty-file": Bad("", None, "is empty"),
    "whitespace-only": Bad("  \n\n\t\n   \n", None, "is empty"),
    "directory": Bad("<dir>", None, "is a directory"),
    "binary-garbage": Bad(bytes(range(256)) * 4, None, "binary"),
    "elf-header": Bad(b"\x7fELF\x02\x01\x01\x00" + os.urandom(64), None, "binary"),
    "non-utf8-no-nul": Bad("run:\n  name: caf\xe9\n".encode("latin-1"), None, "not valid UTF-8"),
    "utf16": Bad("run:\n  name: a\n".encode("utf-16"), None, ""),  # a BOM and NULs: binary
}


def make(tmp_path: Path, case: Bad) -> Path:
    path = tmp_path / "spec.yaml"
    if case.content is None:
        return path
    if case.content == "<dir>":
        path.mkdir()
    elif isinstance(case.content, bytes):
        path.write_bytes(case.content)
    else:
        path.write_text(case.content, encoding="utf-8")
    return path


COMMANDS = {
    "validate": lambda p: ["validate", p],
    "check-static": lambda p: ["check", p, "--level", "static"],
    "check-json": lambda p: ["check", p, "--level", "static", "--format", "json"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", list(CASES))
def test_bad_spec_exits_2_naming_file_place_and_rule(tmp_path, capsys, kind, command):
    case = CASES[kind]
    path = make(tmp_path, case)
    code = main(COMMANDS[command](str(path)))
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in out + err and "internal error" not in err
    assert out == ""  # nothing half-rendered on stdout
    assert err.startswith(f"preflight: {path}")
    if case.location is not None:
        assert re.search(re.escape(str(path)) + case.location, err), err
    assert case.phrase in err
    assert len(err) < 4000  # a message, not a dump
    assert not list(tmp_path.glob("*" + ATTESTATION_SUFFIX)) and not (tmp_path / "runs").exists()


def test_every_problem_of_a_spec_is_listed(tmp_path, capsys):
    path = make(tmp_path, Bad(GOOD.replace("16", "0", 1) + "  learning_rate: -1\n  clip_low: 5\n"
                              + "model:\n  dtype: bf61\n", None, ""))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "(4 problems)" in err
    for where in (":4: $.training.batch_size", ":6: $.training.learning_rate",
                  ":7: $.training.clip_low", ":9: $.model.dtype"):
        assert f"{path}{where}" in err


def test_did_you_mean_for_an_unknown_waiver(tmp_path, capsys):
    path = make(tmp_path, CASES["unknown-waiver-check"])
    assert main(["validate", str(path)]) == 2
    assert "did you mean 'hw.gpu.vram'?" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("waive", "phrase"),
    [
        ("network.link_speed", "expected CHECK_ID=REASON"),
        ("=single rack, measured", "expected CHECK_ID=REASON"),
        ("network.link_speed=short", "at least 8 characters"),
        ("network.link_sped=single rack, measured", "did you mean 'network.link_speed'?"),
        ("no.such.check=single rack, measured", "no such check"),
    ],
)
def test_bad_waive_argument_exits_2(tmp_path, capsys, waive, phrase):
    path = make(tmp_path, Bad(GOOD, None, ""))
    code = main(["check", str(path), "--level", "static", "--waive", waive])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("preflight: --waive") and phrase in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    "argv",
    [["check"], ["validate"], ["check", "x.yaml", "--level", "galactic"], ["check", "x.yaml", "--fail-on", "x"],
     ["frobnicate"], [], ["validate", "x.yaml", "--format", "pdf"]],
)
def test_bad_arguments_exit_2(capsys, argv):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "usage: preflight" in err and "Traceback" not in out + err


def test_good_spec_is_not_an_error(tmp_path, capsys):
    # The counterpart of every case above: the same commands on a good spec do not exit 2.
    path = make(tmp_path, Bad(GOOD, None, ""))
    for command in COMMANDS.values():
        assert main(command(str(path))) in (0, 1)
    assert "preflight:" not in capsys.readouterr().err


def test_installed_console_script_on_binary_garbage(tmp_path):
    script = Path(sys.executable).parent / "preflight"
    if not script.exists():
        pytest.skip(f"console script not installed at {script}")
    path = tmp_path / "garbage.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    env = {k: v for k, v in os.environ.items() if k != "PREFLIGHT_DEBUG"}
    proc = subprocess.run([str(script), "validate", str(path)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"preflight: {path}: looks like a binary file")
    assert "Traceback" not in proc.stderr


# --- inputs that once ended in an internal error (found by the property test below) --------------

TRICKY = {
    # yamlio.load_yaml builds _SpecLoader(text) before its try: PyYAML's Reader raises ReaderError
    # (not a MarkedYAMLError) for control characters other than tab, LF, CR and NEL, and for DEL.
    "control-character": "run:\n  name: a\x08\n",
    "terminal-escape": "run:\n  name: \x1b[31ma\x1b[0m\n",
    # A "\ud800" escape in a double-quoted string loads as a lone surrogate, which passes the schema
    # and then fails to encode in spec.canonical_sha256 (UnicodeEncodeError). See also
    # test_json_spec_with_an_astral_character_is_valid.
    "surrogate-escape": 'run:\n  name: a\n  description: "\\ud800"\n',
    # yamlio._construct_mapping: `key in seen` on an unhashable key raises TypeError.
    "list-as-key": "run:\n  name: a\n[a, b]: 1\n",
    "mapping-as-key": "run:\n  name: a\n? {a: 1}\n: 2\n",
    # Non-string keys pass the schema (stack.packages has no propertyNames), then sorted() in
    # checks/stack.py mixes int/None with str.
    "int-package-name": "run:\n  name: a\nstack:\n  packages:\n    1: '>=1'\n",
    "null-package-name": "run:\n  name: a\nstack:\n  packages:\n    ~: '>=1'\n",
    # PyYAML's composer recurses once per nesting level: RecursionError.
    "deep-nesting": "run: " + "[" * 2000 + "]" * 2000 + "\n",
}


@pytest.mark.parametrize("kind", list(TRICKY))
def test_tricky_inputs_are_located(tmp_path, capsys, kind):
    path = tmp_path / "spec.yaml"
    path.write_text(TRICKY[kind], encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "internal error" not in err
    assert re.search(re.escape(str(path)) + r":\d+: ", err)


def test_json_spec_with_an_astral_character_is_valid(tmp_path, capsys):
    # YAML is a superset of JSON, and json.dumps writes U+1F680 as "\ud83d\ude80".
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"run": {"name": "a", "description": "\U0001f680 launch"}}), encoding="utf-8")
    assert "\\ud83d\\ude80" in path.read_text(encoding="utf-8")
    assert main(["validate", str(path)]) in (0, 1), capsys.readouterr().err


def test_unknown_severity_check_names_its_own_line(tmp_path, capsys):
    path = make(tmp_path, CASES["unknown-severity-check"])
    assert main(["validate", str(path)]) == 2
    assert f"{path}:8: $.checklist.severity" in capsys.readouterr().err


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_non_finite_numbers_are_rejected(tmp_path, capsys, value):
    path = tmp_path / "spec.yaml"
    path.write_text(GOOD + f"  learning_rate: {value}\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    assert f"{path}:6: $.training.learning_rate" in capsys.readouterr().err


# --- property: whatever the mutation, the contract holds -----------------------------------------

SEED_TEXT = (REPO / "examples" / "cpu-smoke.yaml").read_text(encoding="utf-8")
SEED_LINES = SEED_TEXT.splitlines(keepends=True)
VALUE_LINE = re.compile(r"^(\s*(?:- )?[^\s:#][^:#]*:[ \t]+)(\S[^#\n]*?)([ \t]+#.*)?(\n?)$")
VALUE_LINES = [i for i, line in enumerate(SEED_LINES) if VALUE_LINE.match(line)]
FILE_LEVEL = ("is empty", "looks like a binary file", "is not valid UTF-8")

any_char = st.characters(codec=None)  # every code point: controls, NUL, surrogates, emoji
any_text = st.text(any_char, max_size=12)
yamlish_text = st.text(st.sampled_from(list(":-[]{}#&*!|>'\"%@`?,\n\t \\~.0123456789eEaz")), max_size=8)
scalars = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=10),
    st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
)


def _scalar_yaml(value: object) -> str:
    if isinstance(value, float) and value != value:
        return ".nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    return json.dumps(value)


@st.composite
def delete_lines(draw, lines):
    i = draw(st.integers(0, len(lines) - 1))
    return lines[:i] + lines[i + draw(st.integers(1, 3)):]


@st.composite
def duplicate_line(draw, lines):
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines)))
    return lines[:j] + [lines[i]] + lines[j:]


@st.composite
def swap_lines(draw, lines):
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    out = list(lines)
    out[i], out[j] = out[j], out[i]
    return out


@st.composite
def reindent_line(draw, lines):
    i = draw(st.integers(0, len(lines) - 1))
    body = lines[i].lstrip(" ")
    indent = draw(st.one_of(st.integers(0, 8).map(lambda n: " " * n), st.sampled_from(["\t", " \t", "\t  "])))
    return lines[:i] + [indent + body] + lines[i + 1:]


@st.composite
def replace_char(draw, lines):
    text = "".join(lines)
    i = draw(st.integers(0, len(text) - 1))
    return [text[:i] + draw(any_char) + text[i + 1:]]


@st.composite
def insert_text(draw, lines):
    text = "".join(lines)
    i = draw(st.integers(0, len(text)))
    return [text[:i] + draw(st.one_of(any_text, yamlish_text)) + text[i:]]


@st.composite
def replace_value(draw, lines):
    candidates = [i for i, line in enumerate(lines) if VALUE_LINE.match(line)]
    if not candidates:  # earlier mutations left no `key: value` line; add one
        return lines + ["batch_size: " + _scalar_yaml(draw(scalars)) + "\n"]
    i = draw(st.sampled_from(candidates))
    m = VALUE_LINE.match(lines[i])
    assert m is not None
    new = draw(st.one_of(scalars.map(_scalar_yaml), any_text, yamlish_text))
    return lines[:i] + [m.group(1) + new + (m.group(3) or "") + m.group(4)] + lines[i + 1:]


MUTATIONS = {
    "delete-lines": delete_lines,
    "duplicate-line": duplicate_line,
    "swap-lines": swap_lines,
    "reindent-line": reindent_line,
    "replace-char": replace_char,
    "insert-text": insert_text,
    "replace-value": replace_value,
}


def mutated(kinds: list[str], max_steps: int) -> st.SearchStrategy[str]:
    @st.composite
    def build(draw):
        lines = list(SEED_LINES)
        for _ in range(draw(st.integers(1, max_steps))):
            kind = draw(st.sampled_from(kinds))
            if not "".join(lines) and kind != "insert-text":
                break
            lines = "".join(draw(MUTATIONS[kind](lines))).splitlines(keepends=True)
        return "".join(lines)

    return build()


def run_validate(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    return code, out.getvalue(), err.getvalue()


def assert_contract(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates: invalid UTF-8 on disk
    code, out, err = run_validate(path)
    event(f"exit {code}")
    shown = f"mutated spec:\n{text!r}\nexit {code}\nstderr:\n{err}"
    assert code in (0, 1, 2), shown
    assert "Traceback" not in out + err, shown
    assert "internal error" not in err, shown
    if code == 2:
        assert out == "", shown
        assert err.startswith(f"preflight: {path}"), shown
        located = re.search(re.escape(str(path)) + r":\d+: \$", err) or "$." in err or "$[" in err
        assert located or any(p in err for p in FILE_LEVEL), shown
        if "invalid run spec" in err:
            assert re.search(r" \[[A-Za-z-]+\]$", err, re.M), shown  # each problem names its rule
    else:
        assert "gate:" in out, shown


def test_seed_spec_passes_validate():
    code, out, err = run_validate(REPO / "examples" / "cpu-smoke.yaml")
    assert code == 0, out + err
    assert VALUE_LINES and len(VALUE_LINES) > 20


MUTATION_EXAMPLES = 400  # per mutation kind; with the mixed test below, about 3,400 specs a run
PROPERTY_SETTINGS = settings(
    max_examples=MUTATION_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much],
)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(MUTATIONS))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_one_mutation_never_crashes(tmp_path, kind, data):
    text = data.draw(mutated([kind], max_steps=1), label="spec")
    assert_contract(tmp_path / "mutated.yaml", text)


@pytest.mark.slow
@settings(PROPERTY_SETTINGS, max_examples=600)
@given(text=mutated(list(MUTATIONS), max_steps=4))
def test_several_mutations_never_crash(tmp_path, text):
    assert_contract(tmp_path / "mutated.yaml", text)
