"""The monitor's view of a run as Prometheus metrics, through prometheus-client
(``pip install 'rl-preflight[monitor]'``).

Two ways out, both fed from the latest snapshot:
- a textfile for node_exporter's textfile collector (``--prometheus-textfile
  /var/lib/node_exporter/textfile/preflight.prom``), written with prometheus-client's
  ``write_to_textfile`` (a temporary file renamed over the old one, so a scrape never reads half);
- an HTTP endpoint (``--prometheus-port 9108``) served by prometheus-client's own server.

Metrics (label ``run`` is the run's name, or its directory's name):
- ``preflight_run_info{run,status,source}`` 1; ``preflight_run_last_step``;
- ``preflight_metric{run,metric}``: the newest value of each plotted series (pass rate, loss,
  generation length, truncation, utilization, validation pass rate);
- ``preflight_alert_active{run,rule}`` 1 while the rule is in alert, 0 otherwise (every rule);
- ``preflight_alerts_total{run,rule}``: alerts raised so far;
- ``preflight_checklist_item{run,checklist,item,preflight_checklist_item}`` a state set
  (pass, warn, fail, pending);
- ``preflight_fit_asymptote``, ``preflight_fit_predicted_at_budget``,
  ``preflight_fit_hours_to_target`` when there is a fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import PreflightError
from .core import MonitorSnapshot

CHECK_STATES = ("pass", "warn", "fail", "pending")


def _prometheus() -> Any:
    try:
        import prometheus_client
        from prometheus_client import core
    except ImportError:
        raise PreflightError("Prometheus export needs prometheus-client: "
                             "pip install 'rl-preflight[monitor]' (or pip install prometheus-client)") from None
    return prometheus_client, core


class SnapshotCollector:
    """A prometheus-client collector that reports the snapshot it was last given."""

    def __init__(self) -> None:
        self.snap: MonitorSnapshot | None = None
        self.rules: Sequence[str] = ()
        self.alerts_by_rule: Mapping[str, int] = {}

    def update(self, snap: MonitorSnapshot, rules: Sequence[str],
               alerts_by_rule: Mapping[str, int]) -> None:
        self.snap, self.rules, self.alerts_by_rule = snap, list(rules), dict(alerts_by_rule)

    def describe(self) -> list[Any]:
        return []  # the metrics depend on the snapshot: no fixed description

    def collect(self) -> Iterator[Any]:
        snap = self.snap
        if snap is None:
            return
        _, core = _prometheus()
        run = snap.run_name or Path(snap.run_dir).name or snap.run_dir
        info = core.GaugeMetricFamily("preflight_run_info", "The run the monitor follows",
                                      labels=["run", "status", "source"])
        info.add_metric([run, snap.status, snap.source.split(":")[0] or "preflight runner events"], 1)
        yield info
        if snap.last_step is not None:
            yield _gauge(core, "preflight_run_last_step", "Newest training step seen", run, snap.last_step)
        yield from self._metrics(core, run, snap)
        yield from self._alerts(core, run, snap)
        yield from self._checklists(core, run, snap)
        yield from self._fit(core, run, snap)

    def _metrics(self, core: Any, run: str, snap: MonitorSnapshot) -> Iterator[Any]:
        family = core.GaugeMetricFamily("preflight_metric", "Newest value of a monitored metric",
                                        labels=["run", "metric"])
        for name, points in snap.series.items():
            if points and points[-1][1] is not None and math.isfinite(points[-1][1]):
                family.add_metric([run, name], points[-1][1])
        yield family

    def _alerts(self, core: Any, run: str, snap: MonitorSnapshot) -> Iterator[Any]:
        active = core.GaugeMetricFamily("preflight_alert_active", "1 while the alert rule is in alert",
                                        labels=["run", "rule"])
        rules = list(dict.fromkeys([*self.rules, *snap.in_alert, *self.alerts_by_rule]))
        for rule in rules:
            active.add_metric([run, rule], 1 if rule in snap.in_alert else 0)
        yield active
        total = core.CounterMetricFamily("preflight_alerts", "Alerts raised so far", labels=["run", "rule"])
        for rule in rules:
            total.add_metric([run, rule], self.alerts_by_rule.get(rule, 0))
        yield total

    def _checklists(self, core: Any, run: str, snap: MonitorSnapshot) -> Iterator[Any]:
        family = core.StateSetMetricFamily("preflight_checklist_item", "Checklist item states",
                                           labels=["run", "checklist", "item"])
        for checklist, items in snap.checklists.items():
            for item in items:
                family.add_metric([run, checklist, item.id], {s: item.status == s for s in CHECK_STATES})
        yield family

    def _fit(self, core: Any, run: str, snap: MonitorSnapshot) -> Iterator[Any]:
        fit = snap.fit
        if fit is None:
            return
        yield _gauge(core, "preflight_fit_asymptote", "ScaleRL fit: asymptotic pass rate A", run, fit.A)
        if fit.predicted_at_budget is not None:
            yield _gauge(core, "preflight_fit_predicted_at_budget",
                         "ScaleRL fit: pass rate predicted at the compute budget", run, fit.predicted_at_budget)
        if fit.hours_to_target is not None and math.isfinite(fit.hours_to_target):
            yield _gauge(core, "preflight_fit_hours_to_target",
                         "ScaleRL fit: device hours to reach the target pass rate", run, fit.hours_to_target)


def _gauge(core: Any, name: str, doc: str, run: str, value: float) -> Any:
    family = core.GaugeMetricFamily(name, doc, labels=["run"])
    family.add_metric([run], value)
    return family


class Exporter:
    """The textfile and/or the HTTP endpoint, updated with each new snapshot."""

    def __init__(self, textfile: Path | None = None, port: int | None = None,
                 address: str = "0.0.0.0") -> None:
        client, _ = _prometheus()
        self.client = client
        self.textfile = Path(textfile) if textfile else None
        self.collector = SnapshotCollector()
        self.registry = client.CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.server: Any = None
        self.port: int | None = None
        if port is not None:
            try:
                started = client.start_http_server(port, addr=address, registry=self.registry)
            except OSError as exc:
                raise PreflightError(f"--prometheus-port {port}: cannot listen ({exc.strerror or exc}); "
                                     "pick a free port") from None
            self.server = started[0] if isinstance(started, tuple) else None
            self.port = self.server.server_port if self.server is not None else port

    def update(self, snap: MonitorSnapshot, rules: Sequence[str], alerts_by_rule: Mapping[str, int]) -> None:
        self.collector.update(snap, rules, alerts_by_rule)
        if self.textfile is not None:
            try:
                self.client.write_to_textfile(str(self.textfile), self.registry)
            except OSError as exc:
                raise PreflightError(f"--prometheus-textfile {self.textfile}: cannot write "
                                     f"({exc.strerror or exc})") from None

    def render(self) -> str:
        """The exposition text, as a scrape would get it."""
        return str(self.client.generate_latest(self.registry).decode("utf-8"))

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
