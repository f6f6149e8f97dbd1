"""The run's event stream (RUN_DIR/events.jsonl) and the metric sinks behind it.

Training calls ``EventWriter.emit(type, **fields)``; the call stamps the time, makes the fields
JSON-safe (NaN and infinity become null and are named in ``nonfinite``) and puts the event on a
queue. A daemon thread appends each event to events.jsonl as one flushed line and then hands it to
the other sinks (stdout, Weights & Biases, TensorBoard) through one fan-out, so a slow disk or a
slow tracker never holds up a step. Only rank 0 writes. A write error is counted, reported once on
stderr and retried with the next event; it never raises into training.

The event types and their fields are described by schemas/event.schema.json (``validate_event``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.util
import json
import math
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from preflight.errors import PreflightError
from preflight.rundir import EVENTS_FILE
from preflight.schemas import validation_errors

# Step and validation fields as scalar metric names for the trackers: namespaced, units in
# parentheses (torchtitan style). Fields not listed here stay in events.jsonl only.
STEP_METRICS: dict[str, str] = {
    "loss": "loss/policy",
    "entropy": "loss/entropy(nats)",
    "clip_frac_low": "loss/clip_frac_low",
    "clip_frac_high": "loss/clip_frac_high",
    "pass_rate": "reward/pass_rate",
    "gen_len_mean": "gen/len_mean(tokens)",
    "truncation_rate": "gen/truncation_rate",
    "grad_norm": "optim/grad_norm",
    "lr": "optim/lr",
    "batch_size": "optim/batch_size(prompts)",
    "utilization": "perf/utilization",
    "tokens_per_s": "perf/tokens_per_s",
    "memory_gib": "memory/max_reserved(GiB)",
    "energy_j": "energy/step(J)",
    "device_hours": "time/device_hours",
    "attempt": "time/attempt",
}
VALIDATION_METRICS: dict[str, str] = {
    "pass_rate": "validation/pass_rate",
    "n": "validation/n(prompts)",
    "device_hours": "time/device_hours",
}

# Events that hold back while events.jsonl cannot be written, to be retried with the next event.
MAX_PENDING = 100_000
_MAX_DEPTH = 32
_STOP = object()


# --- sinks --------------------------------------------------------------------------------------


@runtime_checkable
class Sink(Protocol):
    """Where events go. ``log`` is called from the writer thread, one event at a time."""

    def log(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Drops everything (the no-op logger)."""

    def log(self, event: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class JsonlSink:
    """Appends events to a JSON Lines file, one flushed line each.

    The file is opened lazily in append mode, so a resumed run continues it. When the file does not
    end in a newline (a crash or a failed write left half a line), a newline is written first so
    the next event starts a line of its own. Errors propagate to the caller (the EventWriter
    counts and retries them); after one the file is reopened on the next write.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fh: IO[str] | None = None

    @staticmethod
    def encode(event: Mapping[str, Any]) -> str:
        return json.dumps(event, ensure_ascii=False, allow_nan=False, separators=(", ", ": "), default=str)

    def log(self, event: dict[str, Any]) -> None:
        self.write_line(self.encode(event))

    def write_line(self, line: str) -> None:
        try:
            if self._fh is None:
                self._fh = self._open()
            self._fh.write(line + "\n")
            self._fh.flush()
        except BaseException:
            self._discard()
            raise

    def _open(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        try:
            with open(self.path, "rb") as f:
                f.seek(0, 2)
                if f.tell() > 0:
                    f.seek(-1, 2)
                    needs_newline = f.read(1) != b"\n"
        except FileNotFoundError:
            pass
        fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        if needs_newline:
            fh.write("\n")
        return fh

    def _discard(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.flush()
            finally:
                self._discard()


class StdoutSink:
    """One compact line per step, validation and alert event (other types are ignored)."""

    TYPES = ("step", "validation", "alert")

    def __init__(self, stream: IO[str] | None = None, types: Iterable[str] = TYPES) -> None:
        self._stream = stream
        self.types = frozenset(types)

    def log(self, event: dict[str, Any]) -> None:
        if event.get("type") not in self.types:
            return
        line = format_event(event)
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def close(self) -> None:
        pass


def format_event(event: Mapping[str, Any]) -> str:
    """A one-line, human-readable summary of an event (what StdoutSink prints)."""
    kind = event.get("type")
    step = event.get("step")
    if kind == "step":
        util = f"{_num(event.get('utilization'), '.2f')}"
        if event.get("utilization_source"):
            util += f"({event['utilization_source']})"
        parts = [
            f"step {step}",
            f"loss {_num(event.get('loss'), '.4g')}",
            f"pass {_num(event.get('pass_rate'), '.3f')}",
            f"len {_num(event.get('gen_len_mean'), '.1f')}",
            f"trunc {_num(event.get('truncation_rate'), '.3f')}",
            f"util {util}",
            f"tok/s {_num(event.get('tokens_per_s'), '.0f')}",
            f"mem {_num(event.get('memory_gib'), '.2f')}GiB",
        ]
        if event.get("attempt"):
            parts.append(f"attempt {event['attempt']}")
        return " | ".join(parts)
    if kind == "validation":
        return f"validation step {step} | pass {_num(event.get('pass_rate'), '.3f')} | n {event.get('n', 'n/a')}"
    if kind == "alert":
        severity = str(event.get("severity", "warn")).upper()
        return (f"ALERT {severity} {event.get('rule')} at step {step}: {event.get('message')}"
                f" -> {event.get('action')}")
    fields = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "time"))
    return f"{kind}: {fields}"


def _num(value: Any, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a"
    return format(value, spec)


def scalar_metrics(event: Mapping[str, Any]) -> dict[str, float]:
    """The namespaced scalars of a step or validation event ({} for other types, nulls left out)."""
    table = {"step": STEP_METRICS, "validation": VALIDATION_METRICS}.get(str(event.get("type")))
    if table is None:
        return {}
    out: dict[str, float] = {}
    for field, name in table.items():
        value = event.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def _require(module: str, package: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(
            f"the {what} sink needs the {package} package, which is not installed here: "
            f"`pip install {package}` (or remove {what!r} from monitoring.sinks)"
        ) from exc


class WandbSink:
    """Step and validation scalars to Weights & Biases. mode="offline" needs no network."""

    def __init__(self, project: str | None = None, entity: str | None = None, mode: str = "online",
                 *, run_dir: Path | str | None = None, name: str | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        wandb = _require("wandb", "wandb", "wandb")
        self._run = wandb.init(
            project=project, entity=entity, mode=mode, name=name,
            dir=str(run_dir) if run_dir is not None else None,
            config=dict(config) if config else None,
        )

    def log(self, event: dict[str, Any]) -> None:
        metrics = scalar_metrics(event)
        if metrics and self._run is not None:
            self._run.log(metrics, step=event.get("step"))

    def close(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.finish()


class TensorBoardSink:
    """Step and validation scalars to TensorBoard event files in ``log_dir``."""

    def __init__(self, log_dir: Path | str, flush_secs: int = 10) -> None:
        tb = _require("torch.utils.tensorboard", "tensorboard", "tensorboard")
        self._writer = tb.SummaryWriter(log_dir=str(log_dir), flush_secs=flush_secs)

    def log(self, event: dict[str, Any]) -> None:
        step = event.get("step")
        for name, value in scalar_metrics(event).items():
            self._writer.add_scalar(name, value, global_step=step, walltime=event.get("time"))

    def close(self) -> None:
        self._writer.close()


class FanOut:
    """Calls every sink for every event; a failing sink is reported once and never stops the rest."""

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self.sinks: list[Sink] = list(sinks)
        self.errors: dict[int, int] = {}

    def log(self, event: dict[str, Any]) -> None:
        for i, sink in enumerate(self.sinks):
            try:
                sink.log(event)
            except Exception as exc:
                self._failed(i, sink, exc, "log")

    def close(self) -> None:
        for i, sink in enumerate(self.sinks):
            try:
                sink.close()
            except Exception as exc:
                self._failed(i, sink, exc, "close")

    def _failed(self, i: int, sink: Sink, exc: Exception, what: str) -> None:
        self.errors[i] = self.errors.get(i, 0) + 1
        if self.errors[i] == 1:
            print(f"preflight runner: metric sink {type(sink).__name__} failed to {what} "
                  f"({type(exc).__name__}: {exc}); training continues (shown once)", file=sys.stderr)


SINK_NAMES = ("jsonl", "stdout", "wandb", "tensorboard", "null")
# The package each sink's writer imports (tensorboard through torch.utils.tensorboard).
SINK_PACKAGES = {"wandb": "wandb", "tensorboard": "tensorboard"}


class SinkUnavailable(PreflightError):
    """A sink the spec declares cannot be opened: the run does not start without it."""


def require_sinks(names: Iterable[str]) -> None:
    """Before any worker starts: every declared sink is known and its package is installed (found,
    not imported), or SinkUnavailable names each one and the fix. The gate's stack.sinks asks the
    same of package metadata; this is the runner started by hand, past the gate."""
    problems = [f"{name!r} is not a known sink (known: {', '.join(SINK_NAMES)})"
                for name in names if name not in SINK_NAMES and name != "none"]
    problems += [f"{name!r} needs the {SINK_PACKAGES[name]} package, which is not installed here "
                 f"(pip install {SINK_PACKAGES[name]})"
                 for name in names if name in SINK_PACKAGES and importlib.util.find_spec(SINK_PACKAGES[name]) is None]
    if problems:
        raise SinkUnavailable(_sinks_message(problems))


def _sinks_message(problems: list[str]) -> str:
    return ("metric sinks in monitoring.sinks cannot be opened, so their metrics would go nowhere: "
            + "; ".join(problems) + ". Install what is missing, or remove the sink from monitoring.sinks")


def make_sinks(names: Iterable[str], run_dir: Path | str,
               wandb_cfg: Mapping[str, Any] | None = None) -> tuple[list[Sink], list[str]]:
    """Build the sinks named in monitoring.sinks; returns (sinks, warnings; none now).

    "jsonl" builds nothing: EventWriter always writes RUN_DIR/events.jsonl. TensorBoard files go
    to RUN_DIR/tensorboard, W&B files under RUN_DIR/wandb. A sink that cannot be opened is never
    dropped quietly: the ones opened are closed and SinkUnavailable names every failure.
    """
    sinks: list[Sink] = []
    problems: list[str] = []
    run_dir = Path(run_dir)
    for name in dict.fromkeys(names):
        try:
            if name == "jsonl":
                continue
            if name == "stdout":
                sinks.append(StdoutSink())
            elif name == "wandb":
                cfg = dict(wandb_cfg or {})
                sinks.append(WandbSink(project=cfg.get("project"), entity=cfg.get("entity"),
                                       mode=cfg.get("mode", "online"), run_dir=run_dir,
                                       name=cfg.get("name")))
            elif name == "tensorboard":
                sinks.append(TensorBoardSink(run_dir / "tensorboard"))
            elif name in ("null", "none"):
                sinks.append(NullSink())
            else:
                problems.append(f"{name!r} is not a known sink (known: {', '.join(SINK_NAMES)})")
        except Exception as exc:
            problems.append(f"{name!r}: {exc}")
    if problems:
        FanOut(sinks).close()
        raise SinkUnavailable(_sinks_message(problems))
    return sinks, []


# --- the writer ---------------------------------------------------------------------------------


def _clean(value: Any, path: str, nonfinite: list[str], depth: int = 0) -> Any:
    """A JSON-safe copy of ``value``; non-finite floats become None and their path is recorded."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        nonfinite.append(path)
        return None
    if depth >= _MAX_DEPTH:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v, f"{path}.{k}", nonfinite, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, deque)):
        return [_clean(v, f"{path}.{i}", nonfinite, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    # numpy scalars and one-element tensors; arrays become lists.
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        try:
            return _clean(item(), path, nonfinite, depth + 1)
        except Exception:
            return str(value)
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            return _clean(tolist(), path, nonfinite, depth + 1)
        except Exception:
            return str(value)
    return str(value)


class EventWriter:
    """RUN_DIR/events.jsonl plus a fan-out to other sinks, written off the training thread.

    ``emit`` returns at once (it only queues); ``flush(timeout)`` waits for the queue to be written;
    ``close()`` drains, joins and closes every sink (it is also registered with atexit). As a
    context manager (``with EventWriter(run_dir) as events:``) it is closed however the block ends,
    an exception included, so every event emitted before a crash is on disk. On ranks other than 0
    every call is a no-op and nothing is created.
    """

    def __init__(self, run_dir: Path | str, rank: int = 0, sinks: list[Sink] | None = None, *,
                 jsonl: JsonlSink | None = None) -> None:
        """``jsonl``: the writer of events.jsonl (a test hands in a slow or failing one)."""
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.path = self.run_dir / EVENTS_FILE
        self.active = rank == 0
        self.write_errors = 0  # failed attempts to append to events.jsonl
        self.dropped = 0  # events never written (backlog overflow, or emitted after close)
        self._fanout = FanOut(sinks or [])
        self._closed = False
        self._lock = threading.Condition()
        self._emitted = 0
        self._handled = 0
        self._pending: deque[str] = deque()
        self._reported = False
        self._jsonl = jsonl if jsonl is not None else JsonlSink(self.path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if self.active:
            self._thread = threading.Thread(target=self._run, name="preflight-events", daemon=True)
            self._thread.start()
            atexit.register(self.close)

    @property
    def sinks(self) -> list[Sink]:
        return self._fanout.sinks

    @property
    def pending(self) -> int:
        """Events that could not be written yet and wait for the next try."""
        return len(self._pending)

    def emit(self, type: str, **fields: Any) -> dict[str, Any] | None:
        """Queue one event and return at once.

        Adds ``time`` (unix seconds; a ``time`` field given here wins, for replays) and ``type``.
        Returns the JSON-safe event as it will be written (do not mutate it), or None on rank != 0
        and after close().
        """
        if not self.active:
            return None
        if self._closed:
            self.dropped += 1
            return None
        nonfinite: list[str] = []
        event: dict[str, Any] = {"time": time.time(), "type": type}
        for key, value in fields.items():
            event[key] = _clean(value, key, nonfinite)
        if nonfinite:
            before = event.get("nonfinite")
            names = list(before) if isinstance(before, list) else []
            event["nonfinite"] = list(dict.fromkeys([*names, *nonfinite]))
        with self._lock:
            self._emitted += 1
        self._queue.put(event)
        return event

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted so far is handled; False if ``timeout`` ran out first."""
        if self._thread is None or not self._thread.is_alive():
            return True
        with self._lock:
            target = self._emitted
            return self._lock.wait_for(lambda: self._handled >= target, timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, stop the thread and close the sinks. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            if self._thread.is_alive():
                print(f"preflight runner: events still queued for {self.path} after {timeout}s; "
                      "giving up on them", file=sys.stderr)
            elif self._pending:
                print(f"preflight runner: {len(self._pending)} events could not be written to "
                      f"{self.path}", file=sys.stderr)
            with contextlib.suppress(Exception):
                self._jsonl.close()
        self._fanout.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                if self._pending:
                    self._write_pending()
                return
            try:
                self._handle(event)
            except Exception as exc:  # never let the thread die: later events still matter
                print(f"preflight runner: event dropped ({type(exc).__name__}: {exc})", file=sys.stderr)
                self.dropped += 1
            finally:
                with self._lock:
                    self._handled += 1
                    self._lock.notify_all()

    def _handle(self, event: dict[str, Any]) -> None:
        self._pending.append(JsonlSink.encode(event))
        while len(self._pending) > MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
        self._write_pending()
        self._fanout.log(event)

    def _write_pending(self) -> None:
        while self._pending:
            try:
                self._jsonl.write_line(self._pending[0])
            except Exception as exc:
                self.write_errors += 1
                if not self._reported:
                    self._reported = True
                    print(f"preflight runner: cannot write {self.path} ({type(exc).__name__}: {exc}); "
                          "training continues, events are kept in memory and retried with each new "
                          "event (shown once)", file=sys.stderr)
                return
            self._pending.popleft()


def validate_event(event: Mapping[str, Any]) -> list[str]:
    """Ways ``event`` breaks schemas/event.schema.json, as 'path: message' strings; [] when valid."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message}"
            for e in validation_errors(dict(event), "event")]
