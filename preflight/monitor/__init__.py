"""The live monitor: follow a run's events.jsonl, evaluate the alert rules and both checklists,
and fit the ScaleRL curve. No Textual here; the TUI and `preflight monitor` both build on it.

Modules: tailer (follow the file), rules (alert rules), checklists (during-training and
optimization items, sign-offs), curvefit (the ScaleRL fit), core (RunMonitor and its snapshot),
render (text and JSON), command (the CLI); for other trainers' logs (verl, TRL, OpenRLHF):
sources/ (detect the kind, read it live, map it to the monitor's events), metricmap (each
framework's metric keys); out of the monitor: export (Prometheus), hooks (command, webhook),
plot (HTML and PNG). Import what you need from them directly; this package
imports nothing, so `preflight` starts fast.
"""
