"""Cluster mode (`preflight check SPEC --cluster auto|ADDRESS`): every alive node of a Ray cluster
runs the machine checks, and cluster checks compare the nodes.

- snapshot.py: what was gathered from the cluster (no Ray import; the cluster checks read it)
- node_task.py: what runs on each node (the machine checks, the facts to compare)
- ray_runner.py: talks to Ray: one task pinned to each node, the placement-group probe, and the
  collective between nodes; imported only in cluster mode
- run.py: one report from the driver's checks, the cluster checks and every node's results
"""
