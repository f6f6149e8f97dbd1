"""Active measurements (`--level active`): storage throughput, collective bandwidth, GPU copies
and matmuls.

Kept out of the static/node import path: the check modules import these lazily, inside the check
function, and anything that needs torch runs it in a child process (or a Ray worker), so
`preflight check` at node level never loads torch and a measurement that overruns its budget can
be killed outright.
"""
