"""Readers for the logs other trainers write, turned into the monitor's own events.

detect (which kind of log a path is), mapping (a trainer's record -> step and validation events,
through preflight.monitor.metricmap), verl (verl's file logger, JSON Lines), tensorboard (event
files of TRL/transformers, OpenRLHF and verl), trainer_state (TRL's trainer_state.json), gpu
(the NVML sampler that fills in utilization, which none of them logs). Each source has the
EventTailer's interface (poll, caught_up, malformed, close), so RunMonitor reads them all alike.
Like preflight.monitor, this package imports nothing itself.
"""
