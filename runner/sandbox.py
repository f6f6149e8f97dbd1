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
- **OS limits**, set by the child's bootstrap before any of the code runs: ``RLIMIT_AS``
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
  before any of the code runs. A run passes only when the child exits 0 *and* its bootstrap
  reports, with a per-run secret it read from stdin before the code started, that every test
  statement ran: ``sys.exit(0)`` or ``os._exit(0)`` before the tests is a failure.

What this is not
----------------
This is a best-effort, in-process guard plus OS limits. It stops runaway loops, memory bombs,
accidental or naive network, subprocess and file-system use, and the common reward hacks; it is
**not a security boundary against a deliberate adversary**. Code in the same interpreter as the
hook can in principle get around it (for example through interpreter internals, or by finding
the bootstrap's secret in its frames), reads of the file system are not restricted, the limits
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

log = logging.getLogger(__name__)

FSIZE_BYTES = 16 * 1024 * 1024  # largest file the child may write
NPROC_LIMIT = 16  # RLIMIT_NPROC (counts all of the user's processes and threads; root is exempt)
TAIL_CHARS = 2000  # how much of the child's stdout/stderr a result keeps
_OUT_KEEP = 64 * 1024  # bytes of output held while the child runs (the tail only)
_STATUS_KEEP = 64 * 1024  # bytes of the status channel read at most
_DRAIN_S = 1.0  # after the child is gone, how long to wait for the last bytes of output
_REAP_S = 5.0  # how long to wait for the kernel to reap a SIGKILLed child (normally instant)
EXIT_FAIL = 3  # the bootstrap's exit code after a reported failure
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


# The child's program, run with ``python -I -S -B -c BOOTSTRAP CONFIG``. It sets the limits,
# installs the audit hook, compiles the solution and the tests, deletes the tests file, and runs
# both in a fresh ``__main__`` module. Results go to the status pipe (fd in CONFIG):
#   "B <category>\t<event>"   an attempt the hook refused (written at once)
#   "F <reason>"              a failure with its reason
#   "M"                       MemoryError
#   "R <secret> ok"           every statement of the code and the tests ran
_BOOTSTRAP = r'''
import os, sys

def _sandbox(cfg, secret):
    import builtins, errno, linecache, resource, signal, traceback, types
    import _posixsubprocess

    write, exit_ = os.write, os._exit
    status_fd, root, own_pid = cfg["status_fd"], os.path.realpath(cfg["root"]), os.getpid()
    root_prefix = root.rstrip("/") + "/"
    ok_record = b"R " + secret + b" ok\n"
    memory_record = b"M\n"

    def emit(text):
        try:
            write(status_fd, text.replace("\n", " ")[:1000].encode("utf-8", "replace") + b"\n")
        except Exception:
            pass

    for name, soft, hard in cfg["limits"]:
        res = getattr(resource, name, None)
        if res is None:
            continue
        try:
            _, cur_hard = resource.getrlimit(res)
            if cur_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, cur_hard), min(hard, cur_hard)
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError):
            pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized file fails with an error instead

    def refused(*args, **kwargs):
        emit("B subprocess\t_posixsubprocess.fork_exec")
        raise PermissionError("sandbox: subprocess is not allowed (_posixsubprocess.fork_exec)")

    _posixsubprocess.fork_exec = refused

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    ALLOWED = frozenset(("/dev/null",))
    UNVERIFIABLE = object()
    NETWORK = frozenset(("socket.connect", "socket.bind", "socket.getaddrinfo",
                         "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo",
                         "socket.sendto", "socket.sendmsg", "socket.sethostname"))
    SUBPROCESS = frozenset(("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                            "os.spawn", "os.fork", "os.forkpty", "os.startfile", "pty.spawn"))
    # event -> ((path index, dir_fd index or None), ...)
    PATHS = {
        "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),),
        "os.rename": ((0, 2), (1, 3)), "os.link": ((0, 2), (1, 3)), "os.symlink": ((1, 2),),
        "os.truncate": ((0, None),), "os.chmod": ((0, 2),), "os.chown": ((0, 3),),
        "os.utime": ((0, 3),), "os.chflags": ((0, None),), "os.lchflags": ((0, None),),
        "os.setxattr": ((0, None),), "os.removexattr": ((0, None),),
        "shutil.rmtree": ((0, 1),),
    }
    WATCHED = NETWORK | SUBPROCESS | frozenset(PATHS) | frozenset((
        "open", "socket.__new__", "os.kill", "os.killpg", "resource.setrlimit",
        "resource.prlimit", "import"))

    def block(category, event):
        emit("B " + category + "\t" + event)
        raise PermissionError("sandbox: " + category + " is not allowed (" + event + ")")

    def resolve(path, dir_fd=None):
        """The real absolute path, None for an fd that is no file (a pipe), or UNVERIFIABLE."""
        if isinstance(path, int):
            try:
                target = os.readlink("/proc/self/fd/%d" % path)
            except OSError:
                return None
            return target if target.startswith("/") else None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        elif not isinstance(path, str):
            # a user PathLike could answer differently each time it is asked: trust pathlib only
            if type(path).__module__ != "pathlib":
                return UNVERIFIABLE
            path = os.fspath(path)
        if dir_fd is not None and dir_fd != -1 and not path.startswith("/"):
            try:
                path = os.path.join(os.readlink("/proc/self/fd/%d" % dir_fd), path)
            except OSError:
                return UNVERIFIABLE
        return os.path.realpath(path)

    def outside(resolved):
        if resolved is None:
            return False
        if resolved is UNVERIFIABLE:
            return True
        return not (resolved == root or resolved.startswith(root_prefix) or resolved in ALLOWED)

    def other_process(resolved):
        if not isinstance(resolved, str) or not resolved.startswith("/proc/"):
            return False
        part = resolved[6:].split("/", 1)[0]
        return part.isdigit() and int(part) != own_pid

    def hook(event, args):
        if event not in WATCHED:
            if event.startswith("ctypes."):
                block("ctypes", event)
            return
        if event == "open":
            path, mode, flags = args
            resolved = resolve(path)
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                (flags or 0) & WRITE_FLAGS)
            if writing and outside(resolved):
                block("write outside sandbox", event)
            if other_process(resolved):
                block("process inspection", event)
            if (mode is None and isinstance(resolved, str) and outside(resolved)
                    and os.path.isdir(resolved)):
                # a directory fd outside would let dir_fd= calls write there
                block("write outside sandbox", event + " (directory)")
        elif event in PATHS:
            for index, fd_index in PATHS[event]:
                dir_fd = args[fd_index] if fd_index is not None and len(args) > fd_index else None
                if len(args) > index and outside(resolve(args[index], dir_fd)):
                    block("write outside sandbox", event)
        elif event in NETWORK:
            block("network", event)
        elif event == "socket.__new__":
            if len(args) > 1 and args[1] != cfg["af_unix"]:
                block("network", event)
        elif event in SUBPROCESS:
            block("subprocess", event)
        elif event == "os.kill":
            if args[0] not in (own_pid, 0, -own_pid):
                block("signal", event)
        elif event == "os.killpg":
            if args[0] not in (own_pid, 0):
                block("signal", event)
        elif event in ("resource.setrlimit", "resource.prlimit"):
            block("rlimit", event)
        elif event == "import":
            if args[0] == "_posixsubprocess":
                block("subprocess", "import _posixsubprocess")

    sys.addaudithook(hook)

    paths = {key: os.path.join(root, cfg[key]) for key in ("solution", "tests")}
    sources, codes = {}, []
    try:
        for key in ("solution", "tests"):
            with open(paths[key], encoding="utf-8") as fh:
                sources[key] = fh.read()
            codes.append(compile(sources[key], paths[key], "exec", dont_inherit=True))
    except (SyntaxError, ValueError) as exc:
        where = " (%s line %s)" % (key, getattr(exc, "lineno", "?"))
        emit("F syntax error: %s%s" % (getattr(exc, "msg", None) or exc, where))
        exit_(cfg["exit_fail"])
    os.remove(paths["tests"])  # the code may not read its tests

    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=builtins, __file__=paths["solution"])
    sys.modules["__main__"] = main
    sys.argv = [paths["solution"]]
    tests_source = sources.pop("tests")

    def flush():
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except Exception:
                pass

    def first_line(exc):
        try:
            text = str(exc)
        except Exception:
            text = ""
        text = text.strip().splitlines()[0] if text.strip() else ""
        return type(exc).__name__ + (": " + text if text else "")

    def where(exc, tests_source):
        names = {paths["solution"]: "solution", paths["tests"]: "tests"}
        lines = {"solution": sources["solution"].splitlines(), "tests": tests_source.splitlines()}
        found = ""
        tb = exc.__traceback__
        while tb is not None:
            label = names.get(tb.tb_frame.f_code.co_filename)
            if label:
                lineno = tb.tb_lineno
                text = lines[label][lineno - 1].strip() if 0 < lineno <= len(lines[label]) else ""
                found = " (%s line %d%s)" % (label, lineno, ": " + text if text else "")
            tb = tb.tb_next
        return found

    try:
        for code in codes:
            exec(code, main.__dict__)
    except MemoryError:
        try:
            write(status_fd, memory_record)
        finally:
            exit_(cfg["exit_memory"])
    except SystemExit as exc:
        emit("F failed: exited before the tests finished (SystemExit: %r)" % (exc.code,))
        flush()
        exit_(cfg["exit_fail"])
    except BaseException as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
            try:
                write(status_fd, memory_record)
            finally:
                exit_(cfg["exit_memory"])
        try:
            emit("F failed: " + first_line(exc) + where(exc, tests_source))
            for key, text in (("solution", sources["solution"]), ("tests", tests_source)):
                linecache.cache[paths[key]] = (len(text), None, text.splitlines(True), paths[key])
            report = traceback.TracebackException(type(exc), exc, exc.__traceback__, limit=-50)
            report.stack = traceback.StackSummary.from_list(
                [f for f in report.stack if f.filename != "<string>"][-8:])  # not the bootstrap
            sys.stderr.write("".join(report.format()))
        except MemoryError:
            exit_(cfg["exit_memory"])
        except BaseException:
            emit("F failed: " + type(exc).__name__)
        flush()
        exit_(cfg["exit_fail"])
    flush()
    write(status_fd, ok_record)
    exit_(0)

def _start():
    import json
    cfg = json.loads(sys.argv[1])
    secret = sys.stdin.buffer.readline().strip()
    _sandbox(cfg, secret)

_start()
'''


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
            [sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP, json.dumps(config)],
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


def _verdict(status: bytes, secret: bytes, timed_out: bool, returncode: int | None,
             tail: str) -> tuple[bool, str]:
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
    if blocked is not None:
        return False, f"blocked: {blocked}"
    if memory or (returncode == EXIT_MEMORY and not timed_out):
        return False, "memory"
    if failure is not None:  # reported before any time-out (e.g. while printing a long traceback)
        return False, failure
    if timed_out:
        return False, "timeout"
    if ok and returncode == 0:
        return True, "ok"
    if returncode is None:
        return False, "killed: did not exit"
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and "CPU time" in tail):
            return False, "timeout"
        if sig == getattr(signal, "SIGXFSZ", None):
            return False, "output limit"
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return False, f"killed: {name}"
    if "MemoryError" in tail:
        return False, "memory"
    if returncode == 0:
        return False, "failed: exited before the tests finished (exit code 0)"
    return False, f"failed: exit code {returncode}"


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
