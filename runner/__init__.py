"""The Ray + FSDP2 RL training runner that `preflight launch` starts behind the gate.

It may import preflight (the spec, the gate, the event schema); preflight never imports it.
"""
