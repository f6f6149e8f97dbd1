"""The service layer: what `preflight check`, `launch`, `validate`, `verify`, `explain` and `list`,
the console (`preflight tui`) and cluster mode do, without parsing arguments or rendering anything.

- waivers.py: ``CHECK_ID=REASON`` waivers: the reason rule, parsing them, naming only known checks
- report.py: the one report builder, and a check pass on this machine into a report
- check.py: load a spec with its references checked, check it (here or on a cluster), attest a pass
- launch.py: the launch gate, and starting the runner in its own process
- catalog.py: the checks that exist: one explained, all of them listed

The gate's rule and the exit codes live in ``preflight.result`` (``blocks_gate``, ``exit_code``),
next to the report they judge. Import the modules directly (``from preflight.service.check import
check``): this file re-exports nothing, so importing one module never drags in the others.
"""
