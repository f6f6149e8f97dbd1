"""Ray's multi-node test cluster, kept to a private temp dir, for the cluster tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def private_ray_cluster(**head_args: Any) -> Iterator[tuple[Any, Path]]:
    """(a ``ray.cluster_utils.Cluster`` with its head started, a temp dir of its own).

    Ray's sockets, logs and address file go to the temp dir (RAY_TMPDIR, short: socket paths
    are limited), never to ~ or /tmp/ray; on the way out the driver disconnects, every raylet
    stops, RAY_TMPDIR is restored and the dir removed.
    """
    import ray
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="rp")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args=head_args)
        yield cluster, Path(tmp)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        if old is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old
        shutil.rmtree(tmp, ignore_errors=True)
