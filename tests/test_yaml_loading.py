"""Spec loading as a user notices it: YAML quirks fixed, problems located, defaults layered, hashing."""

from __future__ import annotations

import pytest

from preflight.cli import main
from preflight.errors import InputFileError, SpecError
from preflight.spec import load_spec
from preflight.yamlio import dump_yaml, load_yaml, read_text

# --- the YAML dialect ---------------------------------------------------------------------------


def problems_of(write_spec, text: str):
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(text))
    return info.value.problems


def test_duplicate_key_is_rejected_naming_both_lines(write_spec):
    text = """\
        run:
          name: a
        training:
          batch_size: 16
          group_size: 2
          batch_size: 32
        """
    [p] = problems_of(write_spec, text)
    assert p.rule == "duplicate-key"
    assert p.line == 6
    assert "'batch_size'" in p.message and "line 4" in p.message


def test_duplicate_top_level_section_is_rejected(write_spec):
    [p] = problems_of(write_spec, "run:\n  name: a\ntraining: {}\nrun:\n  name: b\n")
    assert (p.rule, p.line) == ("duplicate-key", 4)
    assert "'run'" in p.message and "line 1" in p.message


def test_duplicate_key_message_on_the_command_line(write_spec, capsys):
    path = write_spec("run:\n  name: a\n  name: b\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3:" in err and "first defined on line 2" in err and "[duplicate-key]" in err


def test_equal_keys_in_different_mappings_are_not_duplicates(write_spec):
    spec = load_spec(write_spec("run:\n  name: a\nmodel:\n  name_or_path: tiny\nalgorithm:\n  name: grpo\n"))
    assert spec.get("run.name") == "a" and spec.get("algorithm.name") == "grpo"


@pytest.mark.parametrize(
    ("literal", "value"),
    [("1e-6", 1e-06), ("1.0e-5", 1e-05), ("3E-6", 3e-06), ("5e-06", 5e-06), (".000002", 2e-06)],
)
def test_exponent_floats_load_as_floats(write_spec, literal, value):
    spec = load_spec(write_spec(f"run:\n  name: a\ntraining:\n  learning_rate: {literal}\n"))
    lr = spec.get("training.learning_rate")
    assert isinstance(lr, float) and lr == value


def test_learning_rate_1e_minus_6_is_the_float_1e_06():
    data, _ = load_yaml("learning_rate: 1e-6\n", "x.yaml")
    assert data == {"learning_rate": 1e-06}
    assert type(data["learning_rate"]) is float


def test_integers_stay_integers():
    data, _ = load_yaml("a: 512\nb: -3\nc: 0\n", "x.yaml")
    assert data == {"a": 512, "b": -3, "c": 0}
    assert all(type(v) is int for v in data.values())


@pytest.mark.parametrize("word", ["off", "on", "yes", "no", "Off", "NO", "y", "n"])
def test_yaml_1_1_booleans_stay_strings(word):
    data, _ = load_yaml(f"v: {word}\n", "x.yaml")
    assert data == {"v": word}


@pytest.mark.parametrize(("word", "value"), [("true", True), ("false", False), ("True", True), ("FALSE", False)])
def test_yaml_1_2_booleans_are_booleans(word, value):
    data, _ = load_yaml(f"v: {word}\n", "x.yaml")
    assert data["v"] is value


def test_severity_off_stays_the_string_off(write_spec):
    spec = load_spec(write_spec("""\
        run:
          name: a
        checklist:
          severity:
            config.batch.range: off
            config.lr.range: warn
        """))
    assert spec.get("checklist.severity") == {"config.batch.range": "off", "config.lr.range": "warn"}


def test_severity_off_turns_the_check_off_in_a_report(write_spec, capsys):
    path = write_spec("run:\n  name: a\nchecklist:\n  severity:\n    config.batch.range: off\n")
    main(["validate", str(path)])
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "config.batch.range" in ln)
    assert "SKIP" in line


def test_waiver_expiry_date_stays_a_string(write_spec):
    spec = load_spec(write_spec("""\
        run:
          name: a
        waivers:
          - check: network.link_speed
            reason: single rack, measured 25 Gbit/s
            expires: 2030-01-31
        """))
    [waiver] = spec.get("waivers")
    assert waiver["expires"] == "2030-01-31" and isinstance(waiver["expires"], str)


def test_timestamps_are_not_converted():
    data, _ = load_yaml("when: 2030-01-31T10:00:00Z\n", "x.yaml")
    assert data == {"when": "2030-01-31T10:00:00Z"}


def test_impossible_expiry_date_is_a_format_error(write_spec):
    [p] = problems_of(write_spec, """\
        run:
          name: a
        waivers:
          - check: network.link_speed
            reason: single rack, measured 25 Gbit/s
            expires: 2030-02-31
        """)
    assert (p.rule, p.path, p.line) == ("format", "$.waivers[0].expires", 6)


def test_python_tags_are_refused(write_spec):
    [p] = problems_of(write_spec, "run: !!python/object/apply:os.system ['echo hi']\n")
    assert p.rule == "yaml-syntax" and p.line == 1


# --- where a problem is ---------------------------------------------------------------------------


def test_schema_problem_points_at_the_offending_line(write_spec):
    text = """\
        # a comment, then a blank line

        run:
          name: a
        model:
          dtype: bf16

        training:
          group_size: 2
          batch_size: big   # not a number
        """
    [p] = problems_of(write_spec, text)
    assert (p.rule, p.path, p.line) == ("type", "$.training.batch_size", 10)
    assert "expected integer" in p.message and '"big"' in p.message


def test_problem_in_a_list_item_points_at_its_line(write_spec):
    text = """\
        run:
          name: a
        waivers:
          - check: network.link_speed
            reason: single rack, measured 25 Gbit/s
          - check: hw.gpu.vram
            reason: short
        """
    [p] = problems_of(write_spec, text)
    assert (p.rule, p.path, p.line) == ("minLength", "$.waivers[1].reason", 7)


def test_every_problem_is_reported_each_on_its_line(write_spec):
    text = """\
        run:
          name: a
        training:
          batch_size: 0
          learning_rate: -1
          clip_low: 5
        """
    problems = problems_of(write_spec, text)
    got = {(p.path, p.line, p.rule) for p in problems}
    assert got == {
        ("$.training.batch_size", 4, "minimum"),
        ("$.training.learning_rate", 5, "exclusiveMinimum"),
        ("$.training.clip_low", 6, "maximum"),
    }


def test_missing_required_key_points_at_its_parent(write_spec):
    [p] = problems_of(write_spec, "hardware:\n  nodes: 1\nrun:\n  stage: small\n")
    assert (p.rule, p.path, p.line) == ("required", "$.run", 3)
    assert "'name'" in p.message


def test_yaml_syntax_error_points_at_its_line(write_spec):
    [p] = problems_of(write_spec, "run:\n  name: a\ntraining:\n  batch_size: 16\n   group_size: 2\n")
    assert p.rule == "yaml-syntax" and p.line == 5


def test_line_numbers_survive_flow_style(write_spec):
    [p] = problems_of(write_spec, "run: {name: a}\n\n\ntraining: {batch_size: 16, group_size: 0}\n")
    assert (p.path, p.line, p.rule) == ("$.training.group_size", 4, "minimum")


def test_rendered_problem_reads_file_line_path_message_rule(write_spec):
    path = write_spec("run:\n  name: a\ntraining:\n  batch_size: 0\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    text = str(info.value)
    assert text.splitlines()[0] == f"{path}: invalid run spec (1 problem)"
    assert f"  {path}:4: $.training.batch_size: 0 is less than the minimum of 1 [minimum]" in text


# --- did you mean ---------------------------------------------------------------------------------


def test_unknown_key_suggests_the_close_one(write_spec):
    [p] = problems_of(write_spec, "run:\n  name: a\ntraining:\n  learnig_rate: 1e-6\n")
    assert (p.rule, p.path, p.line) == ("additionalProperties", "$.training.learnig_rate", 4)
    assert "unknown key 'learnig_rate'" in p.message
    assert p.hint == "did you mean 'learning_rate'?"


def test_unknown_section_suggests_the_close_one(write_spec):
    [p] = problems_of(write_spec, "run:\n  name: a\nhardwere:\n  nodes: 1\n")
    assert (p.path, p.line) == ("$.hardwere", 3)
    assert p.hint == "did you mean 'hardware'?"


def test_unknown_key_with_nothing_close_lists_the_allowed_keys(write_spec):
    [p] = problems_of(write_spec, "run:\n  name: a\n  zzzzzz: 1\n")
    assert p.hint.startswith("allowed keys here:") and "stage" in p.hint


def test_several_unknown_keys_are_all_named(write_spec):
    [p] = problems_of(write_spec, "run:\n  name: a\n  nmae: b\n  stgae: small\n")
    assert "'nmae'" in p.message and "'stgae'" in p.message


@pytest.mark.parametrize(
    ("yaml_text", "path", "suggestion"),
    [
        ("run:\n  name: a\n  stage: smal\n", "$.run.stage", "small"),
        ("run:\n  name: a\nalgorithm:\n  name: dapoo\n", "$.algorithm.name", "dapo"),
        ("run:\n  name: a\nmodel:\n  dtype: bf61\n", "$.model.dtype", "bf16"),
        ("run:\n  name: a\nchecklist:\n  severity:\n    config.lr.range: of\n",
         "$.checklist.severity.config.lr.range", "off"),
    ],
)
def test_enum_typo_suggests_the_option(write_spec, yaml_text, path, suggestion):
    [p] = problems_of(write_spec, yaml_text)
    assert p.rule == "enum" and p.path == path
    assert p.hint == f"did you mean '{suggestion}'?"
    assert p.line == yaml_text.count("\n")  # the last line holds the typo


def test_enum_error_lists_the_options(write_spec):
    [p] = problems_of(write_spec, "run:\n  name: a\n  domain: poetry\n")
    assert "math, code, chat" in p.message


# --- layering: defaults < stage preset < user ---------------------------------------------------


def test_null_package_drops_it_from_the_stack(write_spec):
    spec = load_spec(write_spec("run:\n  name: a\nstack:\n  packages:\n    wandb: null\n"))
    packages = spec.get("stack.packages")
    assert "wandb" not in packages
    assert packages["torch"] == ">=2.0"  # the other defaults stay


def test_packages_merge_over_the_defaults(write_spec):
    spec = load_spec(write_spec("run:\n  name: a\nstack:\n  packages:\n    vllm: '>=0.4'\n    torch: '>=2.3'\n"))
    packages = spec.get("stack.packages")
    assert packages["vllm"] == ">=0.4" and packages["torch"] == ">=2.3" and "wandb" in packages


def test_cpu_smoke_example_drops_wandb():
    from conftest import REPO

    spec = load_spec(REPO / "examples" / "cpu-smoke.yaml")
    assert "wandb" not in spec.get("stack.packages")


def test_stage_preset_values_are_applied(write_spec):
    spec = load_spec(write_spec("run:\n  name: a\n  stage: small\n"))
    assert spec.get("training.batch_size") == 512
    assert spec.get("training.max_steps") == 3000  # schema default is 1000
    assert spec.get("hardware.nodes") == 2
    assert spec.get("algorithm.name") == "dapo"
    assert spec.get("budget.gpu_hours_min") == 1000 and spec.get("budget.gpu_hours_max") == 5000
    assert "training" not in spec.user  # the file itself stays as written


def test_user_values_override_the_preset(write_spec):
    spec = load_spec(write_spec("run:\n  name: a\n  stage: small\ntraining:\n  batch_size: 256\n"))
    assert spec.get("training.batch_size") == 256
    assert spec.get("training.max_steps") == 3000  # the rest of the preset still applies
    assert spec.user["training"] == {"batch_size": 256}


def test_medium_preset_differs_from_small(write_spec):
    spec = load_spec(write_spec("run:\n  name: a\n  stage: medium\n"))
    assert spec.get("training.batch_size") == 1024 and spec.get("hardware.nodes") == 4


def test_custom_stage_uses_the_schema_defaults(write_spec):
    spec = load_spec(write_spec("run:\n  name: a\n"))
    assert spec.get("run.stage") == "custom"
    assert spec.get("training.max_steps") == 1000 and spec.get("hardware.nodes") == 1
    assert spec.get("training.learning_rate") == 1e-06


# --- the spec hash -------------------------------------------------------------------------------

BASE = """\
run:
  name: a
  stage: small
training:
  batch_size: 256
  learning_rate: 1e-6
stack:
  packages:
    wandb: null
"""

REFORMATTED = [
    # comments and blank lines
    "# my run\n\nrun:\n  name: a   # the name\n  stage: small\n\ntraining:\n  batch_size: 256\n"
    "  learning_rate: 1e-6\nstack:\n  packages:\n    wandb: null\n",
    # key order, top level and nested
    "stack:\n  packages:\n    wandb: ~\ntraining:\n  learning_rate: 1.0e-6\n  batch_size: 256\n"
    "run:\n  stage: small\n  name: a\n",
    # flow style, quoting, other indentation
    "run: {name: 'a', stage: \"small\"}\ntraining: {batch_size: 256, learning_rate: 0.000001}\n"
    "stack:\n    packages:\n        wandb:\n",
    # an editor's $schema line means nothing
    "$schema: ../schemas/runspec.schema.json\n" + BASE,
    # saying a default aloud means the same
    BASE + "model:\n  architecture: dense\n",
]


@pytest.mark.parametrize("other", REFORMATTED, ids=["comments", "key-order", "flow-style", "$schema", "default"])
def test_hash_ignores_layout(write_spec, other):
    base = load_spec(write_spec(BASE, "a.yaml"))
    same = load_spec(write_spec(other, "b.yaml"))
    assert same.sha256 == base.sha256


@pytest.mark.parametrize(
    "changed",
    [BASE.replace("256", "257"), BASE.replace("1e-6", "2e-6"), BASE.replace("wandb: null", "wandb: '*'"),
     BASE.replace("name: a", "name: b"), BASE + "hardware:\n  nodes: 3\n"],
    ids=["batch", "lr", "package", "name", "added-key"],
)
def test_hash_changes_with_a_value(write_spec, changed):
    base = load_spec(write_spec(BASE, "a.yaml"))
    other = load_spec(write_spec(changed, "b.yaml"))
    assert other.sha256 != base.sha256


def test_hash_is_hex_sha256(write_spec):
    digest = load_spec(write_spec(BASE)).sha256
    assert len(digest) == 64 and int(digest, 16) >= 0


# --- reading the file ---------------------------------------------------------------------------


def test_read_text_explains_unreadable_files(tmp_path):
    cases = {
        tmp_path / "missing.yaml": "no such file",
        tmp_path: "is a directory",
    }
    (tmp_path / "empty.yaml").write_bytes(b"")
    cases[tmp_path / "empty.yaml"] = "is empty"
    (tmp_path / "bin.yaml").write_bytes(b"run:\x00\x01")
    cases[tmp_path / "bin.yaml"] = "binary"
    (tmp_path / "latin1.yaml").write_bytes("run:\n  name: caf\xe9\n".encode("latin-1"))
    cases[tmp_path / "latin1.yaml"] = "not valid UTF-8 text (byte 16)"
    for path, phrase in cases.items():
        with pytest.raises(InputFileError) as info:
            read_text(path)
        assert str(info.value).startswith(f"{path}: ") and phrase in str(info.value), path
        assert info.value.hint


def test_utf8_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "win.yaml"
    path.write_bytes(b"\xef\xbb\xbfrun:\r\n  name: a\r\ntraining:\r\n  batch_size: 0\r\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    [p] = info.value.problems
    assert (p.path, p.line) == ("$.training.batch_size", 4)


@pytest.mark.parametrize("value", ["5e-07", "0.001", "1e-6", ".5", "-3", "true", "False", "null", "~", "off", "yes",
                                   "2026-01-31", "0x1f", "1_000", "a: b", "- x", "#c", "", " lead", "plain text"])
def test_dump_yaml_writes_what_load_yaml_reads_back(value: str) -> None:
    """Strings a YAML 1.2 reader would take for numbers, booleans or null (an imported launch
    script's argument "5e-07") are quoted, so the spec reads back exactly as it was written."""
    data = {"trainer": {"command": ["python3", "--lr", value], "config": {"lr": 5e-07, "flag": True, "k": value}}}
    assert load_yaml(dump_yaml(data), "spec.yaml")[0] == data


def test_an_imported_launch_script_with_numeric_arguments_checks_without_a_type_error(tmp_path, capsys) -> None:
    """`preflight import` keeps a script's arguments as text ("--actor_learning_rate 5e-7"): the
    written spec must still validate when `check` reads it."""
    from framework_sources.published_trl_openrlhf import OPENRLHF_TRAIN_DAPO_RAY_HYBRID_ENGINE

    source = tmp_path / "dapo.sh"
    source.write_text(OPENRLHF_TRAIN_DAPO_RAY_HYBRID_ENGINE, encoding="utf-8")
    spec = tmp_path / "spec.yaml"
    assert main(["import", "openrlhf", str(source), "-o", str(spec)]) == 0
    capsys.readouterr()
    assert main(["validate", str(spec)]) in (0, 1)  # judged, never "invalid run spec" (exit 2)
    assert "invalid run spec" not in capsys.readouterr().err
