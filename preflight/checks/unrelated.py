"""The run-spec fields that no rule relates to another field or fact, and why.

Every field of the run-spec schema is either part of a rule (``rules=`` on a check: the field it
constrains or one it relates to) or listed here with the reason it needs none. A test holds the two
lists against the schema, so a new field cannot arrive without someone deciding which it is; the
docs page of rules (docs/rules.md) shows both.
"""

from __future__ import annotations

UNRELATED: dict[str, str] = {
    "$schema": "an editor hint; the tool does not read it",
    "version": "the spec format's version; the schema pins it",
    "run.name": "a label; it only names the run directory's default",
    "run.description": "free text",
    "training.seed": "any value is valid; it seeds sampling, the data order and the built-in task",
    "gate.max_age_hours": "judged against the attestation's own time by `preflight verify` and the launch, "
                          "not against another field",
    "cluster.placement_timeout_s": "how long the placement trial waits for Ray; no other field depends on it",
    "active.storage_file_mb": "the storage probe's file size; the probe stops at active.storage_budget_s "
                              "whatever the size",
    "active.collective_max_mib": "the top of the collective sweep; the bandwidth is the best of the sweep, "
                                 "which busbw reaches well below the default 64 MiB",
    "trainer.command": "what `preflight launch` runs once the gate passes; the checks judge the configuration "
                       "it was imported from (trainer.config)",
    "trainer.source": "a record of the file `preflight import` read",
    "trainer.defaults": "a record of where trainer.config's defaults came from (installed or built-in)",
    "monitoring.metric_map": "names the keys another trainer's log uses for the monitor's metrics; read "
                             "only when the monitor follows such a log, and no other field bounds it "
                             "(the schema holds its shape)",
    "active.collective_budget_s": "the collective probe's own time cap (at most 600 s); it reports what it "
                                  "measured when it runs out",
    "checkpoints.async": "how the runner writes a checkpoint, not what or where: the files, the disk space "
                         "and the save cadence are the same either way, and the one copy of each rank's "
                         "shard in host RAM that a background write needs is already counted by "
                         "hw.memory.host (checkpoint staging) whatever the setting",
}
