"""The Ray executor (`pip install xvalidate[ray]`): one Ray task per cell, running run_cell. With an
address it joins that cluster ("auto": the one running on this machine); without, it starts a
local cluster of `workers` CPUs in a temporary folder and shuts it down, folder and all, at the end."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Iterator, Sequence

from xvalidate.errors import OptionError
from xvalidate.sweep.cell import context, run_cell
from xvalidate.sweep.local import lost
from xvalidate.sweep.plan import Cell


def run_ray(cells: Sequence[Cell], out_dir: str, workers: int = 1, address: str | None = None,
            fresh_workers: bool = False) -> Iterator[tuple[Cell, dict]]:
    """(cell, record) for every cell, as each finishes. On a cluster this process did not start,
    every task stops its framework workers when done (the cluster's processes outlive the sweep)."""
    try:
        import ray
    except ImportError:
        raise OptionError("--executor ray: Ray is not installed; pip install 'xvalidate[ray]'") from None
    if not cells:
        return
    temp = None if address else tempfile.mkdtemp(prefix="xv-ray-")  # short: Ray's socket paths must be
    mode = os.environ.get(AUTH_MODE)
    try:
        if address:
            _token_mode_if_token_held()  # RAY_AUTH_MODE is put back at the end
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(num_cpus=workers, include_dashboard=False, _temp_dir=temp, log_to_driver=False,
                     logging_level="ERROR")
    except Exception as exc:  # noqa: BLE001 (Ray's own errors: no cluster at the address, a bad address)
        _restore(mode)
        if temp:
            _remove(temp)
        hint = "; a cluster with token authentication needs its token in RAY_AUTH_TOKEN" if address else ""
        raise OptionError(f"--address {address or '(local)'}: cannot start or join a Ray cluster "
                          f"({' '.join(str(exc).split())[:200]}){hint}") from None
    try:
        # a task whose process was killed (Ray's memory monitor stops tasks when the node runs low on
        # memory, whoever uses it) runs once more; a cell's own errors are its record, never retried
        task = ray.remote(num_cpus=1, max_retries=1)(run_cell)
        ctx = context()
        fresh = fresh_workers or bool(address)
        pending = {task.remote(cell, out_dir, ctx, fresh): cell for cell in cells}
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                cell = pending.pop(ref)
                try:
                    yield cell, ray.get(ref)
                except Exception as exc:  # noqa: BLE001 (the task's process died)
                    yield cell, lost(cell, f"the cell's Ray task failed: {type(exc).__name__}: {exc}")
        pending = {}
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.shutdown()
        _restore(mode)
        if temp:
            _remove(temp)


AUTH_MODE = "RAY_AUTH_MODE"


def _token_mode_if_token_held() -> None:
    """Ray 2.60's `ray start` turns token authentication on when the machine holds a token
    (~/.ray/auth_token, RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH), but a driver joining with RAY_AUTH_MODE
    unset does not, and its join fails. Ray's own rule for `ray start` is applied to the join (a cluster
    without authentication accepts a token-mode driver too)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available as enable)
    except ImportError:  # a Ray without token authentication
        return
    logger = logging.getLogger(enable.__module__)
    level = logger.level
    logger.setLevel(logging.ERROR)  # it warns that token authentication is on: it is the cluster's choice
    try:
        enable(warn_if_disabled=False)
    finally:
        logger.setLevel(level)


def _restore(mode: str | None) -> None:
    """Put RAY_AUTH_MODE back as the caller had it."""
    if mode is None:
        os.environ.pop(AUTH_MODE, None)
    else:
        os.environ[AUTH_MODE] = mode


def _remove(folder: str, seconds: float = 10.0) -> None:
    """Remove the local cluster's folder; its last processes may still be writing logs as they exit."""
    deadline = time.monotonic() + seconds
    while os.path.exists(folder) and time.monotonic() < deadline:
        shutil.rmtree(folder, ignore_errors=True)
        if os.path.exists(folder):
            time.sleep(0.2)
