"""The launch-script reader on the frameworks' published scripts and on the bash constructs they use."""

from __future__ import annotations

import pytest
from framework_sources.published import (
    OPENRLHF_TRAIN_GRPO_RAY_HYBRID_ENGINE,
    VERL_RUN_QWEN2_7B_MATH,
)

from preflight.frameworks.shell import ShellSyntaxError, read_script


def _is_module(name: str):
    return lambda argv: "-m" in argv and argv[argv.index("-m") + 1] == name


def test_verls_published_script_gives_its_overrides_with_variables_expanded_inside_quotes() -> None:
    script = read_script(VERL_RUN_QWEN2_7B_MATH, "run_qwen2-7b_math.sh", environ={"HOME": "/home/u"})
    cmd = script.find(_is_module("verl.trainer.main_ppo"))
    assert cmd is not None and cmd.line == 13
    assert cmd.argv[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    overrides = cmd.argv[3:]
    assert overrides[0] == "algorithm.adv_estimator=grpo"
    # double quotes expand, and the single quotes inside them are kept for Hydra to read
    assert "data.train_files=['/home/u/data/gsm8k/train.parquet', '/home/u/data/math/train.parquet']" in overrides
    assert "data.truncation=error" in overrides  # single quotes removed, as bash does
    assert "trainer.logger=[console,wandb]" in overrides
    assert overrides[-1] == "trainer.total_epochs=15"  # an empty $@ adds no word
    assert len(overrides) == 37 and script.unresolved == []


def test_an_unknown_variable_stays_as_written_and_is_reported_with_its_line() -> None:
    script = read_script(VERL_RUN_QWEN2_7B_MATH, "run.sh", environ={})
    cmd = script.find(_is_module("verl.trainer.main_ppo"))
    assert cmd is not None
    assert "data.val_files=['$HOME/data/gsm8k/test.parquet', '$HOME/data/math/test.parquet']" in cmd.argv
    assert script.unresolved and all("$HOME" in u for u in script.unresolved)
    assert script.unresolved[0].startswith("line 5:")


def test_the_scripts_own_arguments_become_separate_words() -> None:
    script = read_script('python3 -m verl.trainer.main_ppo a=1 "$@"\n', args=["b=2", "c=3 4"])
    assert script.commands[0].argv == ["python3", "-m", "verl.trainer.main_ppo", "a=1", "b=2", "c=3 4"]


def test_openrlhfs_published_ray_job_script_keeps_the_command_after_the_separator() -> None:
    script = read_script(OPENRLHF_TRAIN_GRPO_RAY_HYBRID_ENGINE, "train_grpo_ray_hybrid_engine.sh")
    cmd = script.find(lambda argv: "openrlhf.cli.train_ppo_ray" in argv)
    assert cmd is not None and cmd.line == 3
    assert cmd.argv[:4] == ["ray", "job", "submit", "--address=http://127.0.0.1:8265"]
    assert cmd.argv[4] == '--runtime-env-json={"working_dir": "/openrlhf"}'
    after = cmd.argv[cmd.argv.index("--") + 1:]
    assert after[:3] == ["python3", "-m", "openrlhf.cli.train_ppo_ray"]
    assert after[after.index("--micro_train_batch_size") + 1] == "8"
    assert after[-1] == "--vllm_enable_sleep"


def test_assignments_exports_defaults_and_arithmetic() -> None:
    text = (
        "export NNODES=${NNODES:-2}\n"
        "GPUS=8; WORLD=$((NNODES * GPUS))\n"
        "unset GONE\n"
        "RAY_ADDRESS=auto python -m pkg.main --world $WORLD --tag \"${TAG:-none}\" # trailing comment\n"
        "if [ -n \"$X\" ]; then\n"
        "  echo hi\n"
        "fi\n"
        "STAMP=$(date +%s) python -m pkg.other\n"
    )
    script = read_script(text, environ={"NNODES": "4"})
    assert script.exported == {"NNODES": "4"}
    first = script.find(_is_module("pkg.main"))
    assert first is not None
    assert first.argv == ["python", "-m", "pkg.main", "--world", "32", "--tag", "none"]
    assert first.env == {"RAY_ADDRESS": "auto"}
    assert script.skipped == [5, 7]
    other = script.find(_is_module("pkg.other"))
    assert other is not None and other.env == {"STAMP": "$(date +%s)"}
    assert any("command substitution" in u for u in script.unresolved)


@pytest.mark.parametrize("text,line", [("a=1\nb='open\n", 2), ('x=1\npython -m m "unclosed\n\n', 2),
                                       ("v=$(echo\n", 1)])
def test_a_quote_that_never_closes_names_its_line(text: str, line: int) -> None:
    with pytest.raises(ShellSyntaxError) as err:
        read_script(text)
    assert err.value.line == line
