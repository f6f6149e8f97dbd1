"""The runner's rewards: the math verifier, the code sandbox, and the reward plug-in registry.

The sandbox cases are the issue's: completions that loop forever, allocate without bound, open a
network connection (loopback only), write outside their temp dir, start processes or ignore
SIGTERM each come back as a failed reward, promptly, and the next run works.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from runner.rewards import (
    CodeReward,
    Reward,
    extract_code,
    get_reward,
    load_reward,
    math_reward,
    register_reward,
    reward_names,
)
from runner.sandbox import SandboxResult, run_python

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox's guards are Linux's")

T = 1.0  # sandbox timeout for the cases that run into it
ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]


def run(code: str, tests: str | list[str] = "assert True", timeout_s: float = 2.0,
        memory_mb: int = 256) -> SandboxResult:
    return run_python(code, tests, timeout_s=timeout_s, memory_mb=memory_mb)


def sandbox_dir(result: SandboxResult) -> str:
    match = re.search(r"CWD=(\S+)", result.stdout_tail)
    assert match, result.stdout_tail
    return match.group(1)


# --- math ----------------------------------------------------------------------------------------


def test_math_reward_scores_exact_answers_after_normalization() -> None:
    completions = ["The answer is $1,234.", "I think it is 1233", "no idea", "so 12.0",
                   "first 1234, then 7", "\\frac{24}{2}"]
    rows = [{"answer": "1234"}, {"answer": "1234"}, {"answer": "7"}, {"answer": "12"},
            {"answer": "7"}, {"answer": 12}]
    assert math_reward([""] * 6, completions, rows) == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert get_reward("math") is math_reward


def test_math_reward_names_a_row_without_an_answer() -> None:
    with pytest.raises(KeyError, match=r"row 1 \(id 'b'\) has no 'answer'"):
        math_reward(["", ""], ["1", "2"], [{"id": "a", "answer": "1"}, {"id": "b"}])
    with pytest.raises(ValueError, match="one prompt and one row per completion"):
        math_reward([""], ["1", "2"], [{"answer": "1"}])


# --- the sandbox ---------------------------------------------------------------------------------


def test_correct_solution_passes_and_wrong_one_fails_on_its_assert() -> None:
    ok = run(ADD, ADD_TESTS)
    assert (ok.passed, ok.reason, ok.category) == (True, "ok", "ok")
    assert ok.duration_s < 2.0
    script = run(ADD, "for a in range(5):\n    assert add(a, a) == 2 * a\n")
    assert script.passed

    wrong = run("def add(a, b):\n    return a - b\n", ADD_TESTS)
    assert not wrong.passed
    assert wrong.reason.startswith("failed: AssertionError"), wrong.reason
    assert "tests line 1: assert add(1, 2) == 3" in wrong.reason
    assert "AssertionError" in wrong.stdout_tail


def test_syntax_errors_missing_names_and_prints() -> None:
    bad = run("def add(a, b)\n    return a + b\n", ADD_TESTS)
    assert not bad.passed and bad.reason.startswith("syntax error"), bad.reason
    missing = run("x = 1\n", ADD_TESTS)
    assert missing.reason.startswith("failed: NameError: name 'add' is not defined"), missing.reason
    noisy = run("print('hello from the sandbox')\n" + ADD, ADD_TESTS)
    assert noisy.passed and "hello from the sandbox" in noisy.stdout_tail


def test_infinite_loop_times_out_promptly_and_leaves_no_temp_dir() -> None:
    start = time.monotonic()
    result = run("import os\nprint('CWD=' + os.getcwd(), flush=True)\nwhile True:\n    pass\n",
                 timeout_s=T)
    elapsed = time.monotonic() - start
    assert (result.passed, result.reason) == (False, "timeout")
    assert elapsed < T + 2.0
    assert not os.path.exists(sandbox_dir(result))


def test_a_child_ignoring_sigterm_is_still_killed() -> None:
    code = textwrap.dedent("""\
        import os, signal
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
            signal.signal(sig, signal.SIG_IGN)
        print('CWD=' + os.getcwd(), flush=True)
        while True:
            pass
        """)
    start = time.monotonic()
    result = run(code, timeout_s=T)
    assert result.reason == "timeout"
    assert time.monotonic() - start < T + 2.0
    assert not os.path.exists(sandbox_dir(result))


@pytest.mark.parametrize("code", [
    "x = bytearray(10**10)\n",
    "x = []\nwhile True:\n    x.append([0] * 10**6)\n",
], ids=["one-big-allocation", "growing-list"])
def test_memory_bombs_fail_with_memory(code: str) -> None:
    start = time.monotonic()
    result = run(code, memory_mb=256)
    assert (result.passed, result.reason) == (False, "memory")
    assert time.monotonic() - start < 4.0


def test_network_is_blocked_even_when_the_error_is_caught() -> None:
    # Loopback only: nothing here may ever reach beyond this machine.
    plain = run("import socket\nsocket.create_connection(('127.0.0.1', 9))\n")
    assert (plain.passed, plain.reason) == (False, "blocked: network")
    raw = run("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))\n")
    assert raw.reason == "blocked: network"
    caught = run("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9))\n"
                 "except OSError:\n    pass\n" + ADD, ADD_TESTS)
    assert (caught.passed, caught.reason) == (False, "blocked: network")
    # A local socket pair (asyncio's self-pipe) is no network.
    loop = run("import asyncio\nasync def f():\n    return 3\nR = asyncio.run(f())\n", "assert R == 3")
    assert loop.passed, loop.reason


def test_writes_outside_the_temp_dir_are_blocked(tmp_path: Path) -> None:
    target = tmp_path / "escape.txt"
    result = run(f"open({str(target)!r}, 'w').write('x')\n")
    assert (result.passed, result.reason) == (False, "blocked: write outside sandbox")
    assert not target.exists()

    keep = tmp_path / "keep.txt"
    keep.write_text("keep", encoding="utf-8")
    for code in (f"import os\nos.remove({str(keep)!r})\n",
                 f"import os\nos.rename({str(keep)!r}, 'stolen.txt')\n",
                 f"import os\nos.symlink({str(keep)!r}, 'link')\nopen('link', 'w').write('x')\n",
                 f"import os\nos.chdir({str(tmp_path)!r})\nopen('escape.txt', 'w')\n",
                 f"import pathlib\npathlib.Path({str(target)!r}).write_text('x')\n"):
        blocked = run(code)
        assert blocked.reason == "blocked: write outside sandbox", (code, blocked.reason)
    assert keep.read_text(encoding="utf-8") == "keep"
    assert not target.exists()

    inside = run("import tempfile\nopen('scratch.txt', 'w').write('hi')\ntempfile.mkstemp()\n",
                 "assert open('scratch.txt').read() == 'hi'")
    assert inside.passed, inside.reason


@pytest.mark.parametrize(("code", "reason"), [
    ("import subprocess\nsubprocess.run(['true'])\n", "blocked: subprocess"),
    ("import os\nos.fork()\n", "blocked: subprocess"),
    ("import os\nos.system('true')\n", "blocked: subprocess"),
    ("import os\nos.execv('/bin/true', ['true'])\n", "blocked: subprocess"),
    ("import ctypes\n", "blocked: ctypes"),
    ("import os\nos.kill(os.getppid(), 0)\n", "blocked: signal"),  # signal 0: only a probe
    ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))\n", "blocked: rlimit"),
], ids=["subprocess", "fork", "system", "exec", "ctypes", "kill-parent", "setrlimit"])
def test_escapes_are_blocked(code: str, reason: str) -> None:
    result = run(code)
    assert (result.passed, result.reason) == (False, reason)


def test_exiting_early_or_reading_the_tests_does_not_pass() -> None:
    for code in ("import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n"):
        result = run(ADD + code, "assert add(1, 2) == 4")
        assert not result.passed
        assert result.reason.startswith("failed: exited before the tests finished"), result.reason
    hidden = run("import os\nFILES = os.listdir('.')\n", "assert 'tests.py' not in FILES, FILES")
    assert hidden.passed, hidden.reason


def test_the_temp_dir_is_removed_after_every_kind_of_end() -> None:
    code = "import os\nprint('CWD=' + os.getcwd(), flush=True)\nopen('junk', 'w').write('x')\n"
    for tests in ("assert True", "assert False", "import os\nos.chmod('.', 0)"):
        result = run(code, tests)
        assert not os.path.exists(sandbox_dir(result)), result.reason


# --- the code reward ------------------------------------------------------------------------------


def test_extract_code_takes_the_last_python_block() -> None:
    assert extract_code("x = 1") == "x = 1"
    text = "Try:\n```python\nx = 1\n```\nBetter:\n```py\nx = 2\n```\nOutput:\n```text\n2\n```\n"
    assert extract_code(text) == "x = 2\n"
    assert extract_code("```\ny = 3\n```") == "y = 3\n"
    assert extract_code("Answer:\n```python\nz = 4\n") == "z = 4\n"  # cut off by the token limit


@pytest.mark.slow
def test_code_reward_batch_runs_concurrently_and_keeps_order() -> None:
    right = "```python\n" + ADD + "```"
    wrong = "def add(a, b):\n    return a * b\n"
    loop = ADD + "while True:\n    pass\n"
    net = "import socket\nsocket.create_connection(('127.0.0.1', 9))\n" + ADD
    bomb = "x = bytearray(10**10)\n" + ADD
    fork = "import os\nos.fork()\n" + ADD
    batch = [right, wrong, loop, net, right, bomb, fork, right,
             wrong, loop, right, net, right, bomb, right, loop]
    expected = [1.0 if c == right else 0.0 for c in batch]
    rows = [{"id": i, "tests": ADD_TESTS} for i in range(len(batch))]
    reward = get_reward("code", timeout_s=T, memory_mb=256)
    assert isinstance(reward, CodeReward) and isinstance(reward, Reward)

    start = time.monotonic()
    scores = reward([""] * len(batch), batch, rows)
    elapsed = time.monotonic() - start
    assert scores == expected
    assert elapsed < len(batch) * T / 2, elapsed  # three loops of T each, run side by side

    results = reward.results(batch[:4], rows[:4])
    assert [r.reason.split(":")[0] for r in results] == ["ok", "failed", "timeout", "blocked"]
    # ... and the trainer goes on: the next batch is scored as usual.
    assert reward([""], [right], [{"tests": "assert add(2, 2) == 4"}]) == [1.0]


def test_code_reward_rejects_rows_without_usable_tests() -> None:
    reward = CodeReward(timeout_s=T)
    with pytest.raises(KeyError, match=r"row 0 \(id 7\) has no 'tests'"):
        reward([""], [ADD], [{"id": 7}])
    with pytest.raises(ValueError, match="has no tests"):
        reward([""], [ADD], [{"tests": []}])
    with pytest.raises(TypeError, match="'tests' must be"):
        reward([""], [ADD], [{"tests": 3}])
    assert reward([], [], []) == []


# --- registry and plug-ins ------------------------------------------------------------------------


def test_registry_lists_known_names_and_refuses_clashes() -> None:
    assert {"math", "code"} <= set(reward_names())
    with pytest.raises(KeyError, match=r"unknown reward 'nope'; known rewards: .*code.*math"):
        get_reward("nope")
    with pytest.raises(KeyError, match="known rewards"):
        load_reward("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_reward("math")(lambda prompts, completions, rows: [])
    with pytest.raises(TypeError, match="takes no options"):
        get_reward("math", scale=2)

    name = f"test-length-{uuid.uuid4().hex[:8]}"

    @register_reward(name)
    def length(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
        return [float(len(c)) for c in completions]

    assert get_reward(name) is length and load_reward(name) is length
    assert name in reward_names()


def test_plugins_load_by_module_and_attr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"reward_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""\
        def length_reward(prompts, completions, rows):
            return [float(len(c)) for c in completions]

        class Scaled:
            def __init__(self, scale=1.0):
                self.scale = scale

            def __call__(self, prompts, completions, rows):
                return [self.scale] * len(completions)

        def one_argument(completions):
            return [0.0] * len(completions)

        class Holder:
            reward = staticmethod(length_reward)

        NOT_CALLABLE = 3
        """), encoding="utf-8")
    (tmp_path / f"{module}_broken.py").write_text("raise RuntimeError('plug-in exploded')\n",
                                                  encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (module, f"{module}_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    length = load_reward(f"{module}:length_reward")
    assert length(["p", "q"], ["ab", "abcd"], [{}, {}]) == [2.0, 4.0]
    scaled = load_reward(f"{module}:Scaled", scale=0.5)
    assert scaled(["p"], ["x"], [{}]) == [0.5]
    assert load_reward(f"{module}:Holder.reward") is not None  # a dotted attribute

    with pytest.raises(ImportError, match=r"cannot import reward plug-in module 'no_such_mod_\w+'"):
        load_reward(f"no_such_mod_{uuid.uuid4().hex[:8]}:f")
    with pytest.raises(ImportError, match="RuntimeError: plug-in exploded"):
        load_reward(f"{module}_broken:f")
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        load_reward(f"{module}:missing")
    with pytest.raises(TypeError, match="is a int, not a reward"):
        load_reward(f"{module}:NOT_CALLABLE")
    with pytest.raises(TypeError, match=r"cannot be called as reward\(prompts, completions, rows\)"):
        load_reward(f"{module}:one_argument")
    with pytest.raises(TypeError, match="cannot create Scaled"):
        load_reward(f"{module}:Scaled", weight=2)
    for bad in (f"{module}:", ":length_reward", "a:b:c", "  "):
        with pytest.raises(ValueError, match="malformed|must be a name"):
            load_reward(bad)
