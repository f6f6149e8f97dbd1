"""The sandbox's child program: ``python -I -S -B sandbox_child.py CONFIG``, secret on stdin.

``runner.sandbox.run_python`` starts this file by its path in a fresh, isolated interpreter (no
site packages, no ``PYTHON*`` variables, and not this package: only the standard library is
imported here). It reads the per-run secret from stdin, sets the OS limits, installs the audit
hook, compiles the solution and the tests, deletes the tests file, and runs both in a fresh
``__main__`` module. Results go to the status pipe (its fd is in CONFIG), one line each:

    "B <category>\\t<event>"   an attempt the hook refused (written at once)
    "F <reason>"              a failure with its reason
    "M"                       MemoryError
    "R <secret> ok"           every statement of the code and the tests ran

What the limits and the hook confine, and what they do not, is in runner/sandbox.py.
"""

from __future__ import annotations

import _posixsubprocess
import builtins
import errno
import json
import linecache
import os
import resource
import signal
import sys
import traceback
import types
from typing import Any, NoReturn

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
ALLOWED = frozenset(("/dev/null",))
UNVERIFIABLE = object()  # a path the hook cannot pin down: treated as outside
NETWORK = frozenset(("socket.connect", "socket.bind", "socket.getaddrinfo",
                     "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo",
                     "socket.sendto", "socket.sendmsg", "socket.sethostname"))
SUBPROCESS = frozenset(("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                        "os.spawn", "os.fork", "os.forkpty", "os.startfile", "pty.spawn"))
# event -> ((path index, dir_fd index or None), ...)
PATHS: dict[str, tuple[tuple[int, int | None], ...]] = {
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

_write, _exit = os.write, os._exit  # bound before the code runs: it may replace the os module's


class Status:
    """The status pipe: one line per record, never raising."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def emit(self, text: str) -> None:
        # a try statement, not contextlib.suppress: the code may have replaced the contextlib module's
        try:  # noqa: SIM105
            _write(self.fd, text.replace("\n", " ")[:1000].encode("utf-8", "replace") + b"\n")
        except Exception:
            pass

    def raw(self, record: bytes) -> None:
        _write(self.fd, record)


def set_limits(limits: list[list[Any]]) -> None:
    """RLIMIT_* (name, soft, hard), never above a hard limit already in place."""
    for name, soft, hard in limits:
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


class Guard:
    """The audit hook: refuses network, subprocesses, writes outside ``root``, ctypes, signals to
    other processes, rlimit changes and reads of other processes' /proc entries."""

    def __init__(self, status: Status, root: str, af_unix: int) -> None:
        self.status = status
        self.root = root
        self.root_prefix = root.rstrip("/") + "/"
        self.own_pid = os.getpid()
        self.af_unix = af_unix

    def install(self) -> None:
        _posixsubprocess.fork_exec = self.refused_fork_exec
        sys.addaudithook(self.hook)

    def refused_fork_exec(self, *args: Any, **kwargs: Any) -> NoReturn:
        self.status.emit("B subprocess\t_posixsubprocess.fork_exec")
        raise PermissionError("sandbox: subprocess is not allowed (_posixsubprocess.fork_exec)")

    def block(self, category: str, event: str) -> NoReturn:
        self.status.emit("B " + category + "\t" + event)
        raise PermissionError("sandbox: " + category + " is not allowed (" + event + ")")

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in WATCHED:
            if event.startswith("ctypes."):
                self.block("ctypes", event)
            return
        if event == "open":
            self.on_open(event, args)
        elif event in PATHS:
            self.on_path(event, args)
        elif event in NETWORK:
            self.block("network", event)
        elif event in SUBPROCESS:
            self.block("subprocess", event)
        else:
            self.on_other(event, args)

    def on_open(self, event: str, args: tuple[Any, ...]) -> None:
        path, mode, flags = args
        resolved = self.resolve(path)
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
            (flags or 0) & WRITE_FLAGS)
        if writing and self.outside(resolved):
            self.block("write outside sandbox", event)
        if self.other_process(resolved):
            self.block("process inspection", event)
        if (mode is None and isinstance(resolved, str) and self.outside(resolved)
                and os.path.isdir(resolved)):
            # a directory fd outside would let dir_fd= calls write there
            self.block("write outside sandbox", event + " (directory)")

    def on_path(self, event: str, args: tuple[Any, ...]) -> None:
        for index, fd_index in PATHS[event]:
            dir_fd = args[fd_index] if fd_index is not None and len(args) > fd_index else None
            if len(args) > index and self.outside(self.resolve(args[index], dir_fd)):
                self.block("write outside sandbox", event)

    def on_other(self, event: str, args: tuple[Any, ...]) -> None:
        own_pid = self.own_pid
        if event == "socket.__new__":
            if len(args) > 1 and args[1] != self.af_unix:
                self.block("network", event)
        elif event == "os.kill":
            if args[0] not in (own_pid, 0, -own_pid):
                self.block("signal", event)
        elif event == "os.killpg":
            if args[0] not in (own_pid, 0):
                self.block("signal", event)
        elif event in ("resource.setrlimit", "resource.prlimit"):
            self.block("rlimit", event)
        elif event == "import" and args[0] == "_posixsubprocess":
            self.block("subprocess", "import _posixsubprocess")

    def resolve(self, path: Any, dir_fd: Any = None) -> Any:
        """The real absolute path, None for an fd that is no file (a pipe), or UNVERIFIABLE."""
        if isinstance(path, int):
            try:  # %d takes the int's own value; an f-string would ask the code's int subclass
                target = os.readlink("/proc/self/fd/%d" % path)  # noqa: UP031
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
                path = os.path.join(os.readlink("/proc/self/fd/%d" % dir_fd), path)  # noqa: UP031
            except OSError:
                return UNVERIFIABLE
        return os.path.realpath(path)

    def outside(self, resolved: Any) -> bool:
        if resolved is None:
            return False
        if resolved is UNVERIFIABLE:
            return True
        return not (resolved == self.root or resolved.startswith(self.root_prefix)
                    or resolved in ALLOWED)

    def other_process(self, resolved: Any) -> bool:
        if not isinstance(resolved, str) or not resolved.startswith("/proc/"):
            return False
        part = resolved[6:].split("/", 1)[0]
        return part.isdigit() and int(part) != self.own_pid


class Program:
    """The solution and its tests: compiled apart (an unclosed string in the solution cannot
    swallow the tests), then run one after the other in a fresh ``__main__``."""

    def __init__(self, cfg: dict[str, Any], root: str, status: Status, secret: bytes) -> None:
        self.cfg = cfg
        self.status = status
        self.ok_record = b"R " + secret + b" ok\n"
        self.paths = {key: os.path.join(root, cfg[key]) for key in ("solution", "tests")}
        self.sources: dict[str, str] = {}
        self.codes: list[types.CodeType] = []

    def compile(self) -> None:
        """Compile both and delete the tests file (the code may not read its tests); a syntax
        error ends the child."""
        key = "solution"
        try:
            for key in ("solution", "tests"):
                with open(self.paths[key], encoding="utf-8") as fh:
                    self.sources[key] = fh.read()
                self.codes.append(compile(self.sources[key], self.paths[key], "exec", dont_inherit=True))
        except (SyntaxError, ValueError) as exc:
            where = f" ({key} line {getattr(exc, 'lineno', '?')})"
            self.status.emit(f"F syntax error: {getattr(exc, 'msg', None) or exc}{where}")
            _exit(self.cfg["exit_fail"])
        os.remove(self.paths["tests"])

    def run(self) -> NoReturn:
        """Run both; report how it ended and exit."""
        main = types.ModuleType("__main__")
        main.__dict__.update(__builtins__=builtins, __file__=self.paths["solution"])
        sys.modules["__main__"] = main
        sys.argv = [self.paths["solution"]]
        try:
            for code in self.codes:
                exec(code, main.__dict__)
        except MemoryError:
            self.memory()
        except SystemExit as exc:
            self.status.emit(f"F failed: exited before the tests finished (SystemExit: {exc.code!r})")
            _flush()
            _exit(self.cfg["exit_fail"])
        except BaseException as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
                self.memory()
            self.failed(exc)
        _flush()
        self.status.raw(self.ok_record)
        _exit(0)

    def memory(self) -> NoReturn:
        try:
            self.status.raw(b"M\n")
        finally:
            _exit(self.cfg["exit_memory"])

    def failed(self, exc: BaseException) -> NoReturn:
        """The failure's reason on the status pipe, its traceback (the code's and the tests'
        frames only) on stderr."""
        try:
            self.status.emit("F failed: " + _first_line(exc) + self.where(exc))
            for key, text in self.sources.items():
                linecache.cache[self.paths[key]] = (len(text), None, text.splitlines(True), self.paths[key])
            report = traceback.TracebackException(type(exc), exc, exc.__traceback__, limit=-50)
            report.stack = traceback.StackSummary.from_list(
                [f for f in report.stack if f.filename != __file__][-8:])  # not this program
            sys.stderr.write("".join(report.format()))
        except MemoryError:
            _exit(self.cfg["exit_memory"])
        except BaseException:
            self.status.emit("F failed: " + type(exc).__name__)
        _flush()
        _exit(self.cfg["exit_fail"])

    def where(self, exc: BaseException) -> str:
        """' (solution line N: source)' or ' (tests ...)': the innermost frame of either."""
        names = {self.paths["solution"]: "solution", self.paths["tests"]: "tests"}
        lines = {label: self.sources[label].splitlines() for label in ("solution", "tests")}
        found = ""
        tb = exc.__traceback__
        while tb is not None:
            label = names.get(tb.tb_frame.f_code.co_filename)
            if label:
                lineno = tb.tb_lineno
                text = lines[label][lineno - 1].strip() if 0 < lineno <= len(lines[label]) else ""
                found = f" ({label} line {lineno}{': ' + text if text else ''})"
            tb = tb.tb_next
        return found


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _first_line(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    text = text.strip().splitlines()[0] if text.strip() else ""
    return type(exc).__name__ + (": " + text if text else "")


def main() -> NoReturn:
    cfg = json.loads(sys.argv[1])
    secret = sys.stdin.buffer.readline().strip()
    status = Status(cfg["status_fd"])
    set_limits(cfg["limits"])
    root = os.path.realpath(cfg["root"])
    Guard(status, root, cfg["af_unix"]).install()
    program = Program(cfg, root, status, secret)
    program.compile()
    program.run()


if __name__ == "__main__":
    main()
