"""Run a model-written Python program against its tests in a subprocess, with limits.

``run_python(code, tests)`` writes the completion and its tests into a fresh temporary directory,
runs them in a new Python process and returns a ``SandboxResult``: passed or not, and why. It never
hangs its caller: the parent waits ``timeout_s`` of wall time at most, then kills the child's whole
process group with SIGKILL (which no handler can ignore), and the temporary directory is always
removed.

What confines the child
-----------------------
- **A fresh interpreter**: ``sys.executable -I -S -B``: no ``PYTHON*`` variables, no user or site
  packages (sandboxed code gets the standard library only), no ``.pyc`` writes. The environment
  is minimal: ``PATH``, and ``HOME`` and ``TMPDIR`` pointing at the temporary directory, which is
  also the working directory. Nothing else of the trainer's environment (tokens, proxy variables)
  is passed on.
- **OS limits**, set by the child (``runner/sandbox_child.py``) before any of the code runs: ``RLIMIT_AS``
  (``memory_mb``), ``RLIMIT_CPU`` (``ceil(timeout_s) + 1`` s), ``RLIMIT_FSIZE`` (16 MiB per
  file), ``RLIMIT_NPROC`` (small) and ``RLIMIT_CORE`` (0); soft and hard limits are equal, and
  the audit hook below refuses to change them afterwards. The child runs in its own session
  (``start_new_session``), so killing its process group reaches anything it started.
- **An audit hook** (``sys.addaudithook``; Python offers no way to remove one) that refuses,
  with ``PermissionError``: creating an Internet socket and any connect, bind, DNS lookup or
  ``sendto`` (``socket.socketpair``, which asyncio needs, still works); starting programs or
  forking (``subprocess``, ``os.system``, ``os.exec*``, ``os.posix_spawn``, ``os.spawn*``,
  ``os.fork``, ``os.forkpty``); opening a file for writing, or removing, renaming, linking,
  creating a directory, changing modes, owners, times or attributes, anywhere outside the
  temporary directory (``/dev/null`` is allowed); ``ctypes``; signalling other processes;
  ``setrlimit``; and reading other processes' ``/proc/<pid>`` entries. A refused attempt fails the
  run even when the code catches the error and carries on.
- **Tests the code cannot skip or read**: the code and the tests are compiled separately (an
  unclosed string in the completion cannot swallow the tests) and the tests file is deleted
  before any of the code runs. A run passes only when the child exits 0 *and* reports, with a
  per-run secret it read from stdin before the code started, that every test
  statement ran: ``sys.exit(0)`` or ``os._exit(0)`` before the tests is a failure.

What this is not
----------------
This is a best-effort, in-process guard plus OS limits. It stops runaway loops, memory bombs,
accidental or naive network, subprocess and file-system use, and the common reward hacks; it is
**not a security boundary against a deliberate adversary**. Code in the same interpreter as the
hook can in principle get around it (for example through interpreter internals, or by finding
the child program's secret in its frames), reads of the file system are not restricted, the limits
do not cap the total disk the temporary directory can take, ``RLIMIT_NPROC`` does not apply to
root (and, as it counts all of the user's processes and threads, a non-root trainer that already
runs more than ``NPROC_LIMIT`` leaves sandboxed code unable to start threads), and running as root gives the child root's file-system rights wherever the hook has a gap.
Nor does it stop a program that games its tests (say, an object whose ``__eq__`` is always true).
For untrusted code at scale, run this inside a container or a jail with no network and a
read-only root (nsjail, gVisor, firejail, bubblewrap), as an unprivileged user.

Reasons
-------
``reason`` is one of ``"ok"``, ``"timeout"``, ``"memory"``, ``"blocked: network"``,
``"blocked: subprocess"``, ``"blocked: write outside sandbox"``, ``"blocked: ctypes"``,
``"blocked: signal"``, ``"blocked: rlimit"``, ``"blocked: process inspection"``,
``"syntax error: ..."``, ``"failed: <Exception>: <first line> (<file> line N: <source>)"``,
``"failed: exited before the tests finished (...)"``, ``"failed: exit code N"``,
``"killed: <signal>"``, ``"output limit"`` or ``"sandbox error: ..."`` (the sandbox itself could
not run, e.g. no process could be started). ``SandboxResult.category`` is the part before the
first ``:``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FSIZE_BYTES = 16 * 1024 * 1024  # largest file the child may write
NPROC_LIMIT = 16  # RLIMIT_NPROC (counts all of the user's processes and threads; root is exempt)
TAIL_CHARS = 2000  # how much of the child's stdout/stderr a result keeps
_OUT_KEEP = 64 * 1024  # bytes of output held while the child runs (the tail only)
_STATUS_KEEP = 64 * 1024  # bytes of the status channel read at most
_DRAIN_S = 1.0  # after the child is gone, how long to wait for the last bytes of output
_REAP_S = 5.0  # how long to wait for the kernel to reap a SIGKILLed child (normally instant)
EXIT_FAIL = 3  # the child program's exit code after a reported failure
EXIT_MEMORY = 4  # ... after a MemoryError

SOLUTION_FILE = "solution.py"
TESTS_FILE = "tests.py"


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one ``run_python`` call."""

    passed: bool
    reason: str
    stdout_tail: str
    duration_s: float

    @property
    def category(self) -> str:
        """``reason`` up to its first ``":"`` (``"failed"``, ``"blocked"``, ``"timeout"``, ...)."""
        return self.reason.split(":", 1)[0]


# The child's program (see its docstring): started by its path, so it runs as a file of its own
# without this package on its sys.path.
CHILD = str(Path(__file__).resolve().with_name("sandbox_child.py"))


def run_python(code: str, tests: str | Sequence[str], timeout_s: float = 5.0,
               memory_mb: int = 512) -> SandboxResult:
    """Run ``code`` and then ``tests`` (a test script, or a list of statements such as asserts) in
    a confined subprocess; passed only when every test statement ran without error.

    Never raises for anything the code does and never waits more than about ``timeout_s`` plus
    process start-up and clean-up; see the module docstring for the limits and what they do not
    cover.
    """
    tests_source = tests if isinstance(tests, str) else "\n".join(tests)
    start = time.monotonic()
    root = tempfile.mkdtemp(prefix="rl-sandbox-")
    try:
        for name, text in ((SOLUTION_FILE, code), (TESTS_FILE, tests_source)):
            with open(os.path.join(root, name), "w", encoding="utf-8") as fh:
                fh.write(text)
        return _run(root, timeout_s, memory_mb, start)
    except Exception as exc:  # a failure of the sandbox itself, never of the code
        log.warning("sandbox could not run the code: %s", exc, exc_info=True)
        return SandboxResult(False, f"sandbox error: {type(exc).__name__}: {exc}", "",
                             time.monotonic() - start)
    finally:
        _remove_tree(root)


def _run(root: str, timeout_s: float, memory_mb: int, start: float) -> SandboxResult:
    secret = secrets.token_hex(16).encode()
    cpu_s = math.ceil(timeout_s) + 1
    memory_bytes = int(memory_mb) * 1024 * 1024
    status_r, status_w = os.pipe()
    config = {
        "root": root,
        "solution": SOLUTION_FILE,
        "tests": TESTS_FILE,
        "status_fd": status_w,
        "af_unix": int(getattr(socket, "AF_UNIX", 1)),
        "exit_fail": EXIT_FAIL,
        "exit_memory": EXIT_MEMORY,
        # (name, soft, hard); CPU gets a second of grace so SIGXCPU comes before SIGKILL
        "limits": [("RLIMIT_AS", memory_bytes, memory_bytes), ("RLIMIT_CPU", cpu_s, cpu_s + 1),
                   ("RLIMIT_FSIZE", FSIZE_BYTES, FSIZE_BYTES),
                   ("RLIMIT_NPROC", NPROC_LIMIT, NPROC_LIMIT), ("RLIMIT_CORE", 0, 0)],
    }
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": root, "TMPDIR": root}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", CHILD, json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=root, env=env, pass_fds=(status_w,), start_new_session=True, close_fds=True)
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(status_w)
    try:
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # OSError: the child is already gone
            proc.stdin.write(secret + b"\n")
        with contextlib.suppress(OSError):
            proc.stdin.close()
        out, status, timed_out, returncode = _supervise(proc, status_r, start + timeout_s)
    finally:
        os.close(status_r)
        if proc.stdout is not None:
            proc.stdout.close()
    duration = time.monotonic() - start
    tail = out[-4 * TAIL_CHARS:].decode("utf-8", "replace")[-TAIL_CHARS:]
    passed, reason = _verdict(status, secret, timed_out, returncode, tail)
    return SandboxResult(passed, reason, tail, duration)


def _supervise(proc: subprocess.Popen[bytes], status_r: int,
               deadline: float) -> tuple[bytes, bytes, bool, int | None]:
    """Read the child's output and status until it exits or the deadline passes; kill its
    process group either way; reap it. Returns (output tail, status, timed out, return code)."""
    assert proc.stdout is not None
    out, status = bytearray(), bytearray()
    buffers = {proc.stdout.fileno(): out, status_r: status}
    sel = selectors.DefaultSelector()
    try:
        for fd in buffers:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        timed_out = False
        while not _exited(proc):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if sel.get_map():
                _read_ready(sel, buffers, status_r, min(remaining, 0.05))
            else:  # the child closed its pipes but runs on
                time.sleep(min(remaining, 0.005))
        # The leader is not reaped yet (waitid WNOWAIT), so its process-group id still names
        # this group only: kill everything in it, whatever handlers it installed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        drain_until = time.monotonic() + _DRAIN_S
        while sel.get_map() and time.monotonic() < drain_until:
            _read_ready(sel, buffers, status_r, max(0.0, drain_until - time.monotonic()))
    finally:
        sel.close()
    try:
        returncode: int | None = proc.wait(timeout=_REAP_S)
    except subprocess.TimeoutExpired:  # stuck in the kernel; Popen reaps it later
        log.warning("sandbox child %d did not exit after SIGKILL", proc.pid)
        returncode = None
    return bytes(out), bytes(status), timed_out, returncode


def _read_ready(sel: selectors.BaseSelector, buffers: dict[int, bytearray], status_r: int,
                timeout: float) -> None:
    for key, _ in sel.select(timeout):
        fd = int(key.fd)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            sel.unregister(fd)
            continue
        buf = buffers[fd]
        if fd == status_r:
            if len(buf) < _STATUS_KEEP:
                buf += chunk[:_STATUS_KEEP - len(buf)]
        else:
            buf += chunk
            if len(buf) > 2 * _OUT_KEEP:
                del buf[:-_OUT_KEEP]


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Has the child exited? Leaves it unreaped where the platform allows (os.waitid)."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return proc.poll() is not None
    try:
        return waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped (e.g. SIGCHLD ignored by the host process)
        return True


@dataclass(frozen=True)
class _Reports:
    """What the child wrote on its status pipe (the first of each kind counts)."""

    blocked: str | None  # the category of the first attempt the hook refused
    failure: str | None  # the first failure's reason
    memory: bool  # a MemoryError
    ok: bool  # every statement ran (with this run's secret)

    @classmethod
    def read(cls, status: bytes, secret: bytes) -> _Reports:
        blocked = failure = None
        ok = memory = False
        for line in status.split(b"\n"):
            if line.startswith(b"B ") and blocked is None:
                blocked = line[2:].split(b"\t", 1)[0].decode("utf-8", "replace")
            elif line.startswith(b"F ") and failure is None:
                failure = line[2:].decode("utf-8", "replace")
            elif line == b"M":
                memory = True
            elif line == b"R " + secret + b" ok":
                ok = True
        return cls(blocked, failure, memory, ok)


def _verdict(status: bytes, secret: bytes, timed_out: bool, returncode: int | None,
             tail: str) -> tuple[bool, str]:
    reports = _Reports.read(status, secret)
    if reports.blocked is not None:
        return False, f"blocked: {reports.blocked}"
    if reports.memory or (returncode == EXIT_MEMORY and not timed_out):
        return False, "memory"
    if reports.failure is not None:  # reported before any time-out (e.g. while printing a long traceback)
        return False, reports.failure
    if timed_out:
        return False, "timeout"
    if reports.ok and returncode == 0:
        return True, "ok"
    if returncode is None:
        return False, "killed: did not exit"
    if returncode < 0:
        return False, _killed_by(-returncode, tail)
    if "MemoryError" in tail:
        return False, "memory"
    if returncode == 0:
        return False, "failed: exited before the tests finished (exit code 0)"
    return False, f"failed: exit code {returncode}"


def _killed_by(sig: int, tail: str) -> str:
    """The reason for a child that a signal ended."""
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and "CPU time" in tail):
        return "timeout"
    if sig == getattr(signal, "SIGXFSZ", None):
        return "output limit"
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    return f"killed: {name}"


def _remove_tree(root: str) -> None:
    """Remove the sandbox directory, even where the code took permissions away."""

    def fix(func, path, _exc):  # type: ignore[no-untyped-def]
        try:
            os.chmod(os.path.dirname(path), 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(root, onexc=fix)
    else:
        shutil.rmtree(root, onerror=fix)
    if os.path.exists(root):
        shutil.rmtree(root, ignore_errors=True)
        if os.path.exists(root):
            log.warning("could not remove sandbox directory %s", root)
