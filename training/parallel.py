"""Ray for offline work: run a function over many calls as Ray tasks (``as_completed``), on a
Ray started here with ``workers`` CPUs or on an existing cluster (``ray_address``, e.g.
``auto`` on a node or ``ray://HEAD:10001``; its nodes need the project installed).

Used by ``nba evaluate --workers`` (``training.evaluate``), ``nba simulate --seeds``
(``simulators.sweep``) and ``bench/ope_validation.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from tqdm import tqdm

from engine.settings import ConfigError


@contextlib.contextmanager
def ray_session(workers: int | None = None, ray_address: str | None = None) -> Iterator[None]:
    """A Ray for the block: started here with ``workers`` CPUs (default: every core) and stopped
    at its end, unless one is running in this process already; ``ray_address``: an existing
    cluster's instead."""
    import ray

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_address, num_cpus=None if ray_address else workers, include_dashboard=False,
                 configure_logging=False, log_to_driver=False)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def as_completed(function: Callable[[object], object], calls: list, workers: int | None = None,
                 ray_address: str | None = None, progress: str | bool = False) -> Iterator[tuple[int, object]]:
    """``function(call)`` for each of ``calls``, each a Ray task of one CPU (``function`` must be
    importable by the workers: a module's top-level function); yields (the call's index, its
    result) as each ends. A task's exception is raised here as it was raised there. The Ray is
    ``ray_session``'s. ``progress``: a progress bar with this description."""
    import ray

    with ray_session(workers, ray_address):
        task = ray.remote(num_cpus=1)(function)
        index = {task.remote(call): i for i, call in enumerate(calls)}
        waiting = list(index)
        with tqdm(total=len(calls), disable=not progress, desc=progress or None) as bar:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None
                bar.update()
                yield index[done[0]], result


def run_all(function: Callable[[object], object], calls: list, workers: int | None = None,
            ray_address: str | None = None, progress: str | bool = False) -> list:
    """``as_completed``'s results in the order of ``calls``."""
    results = dict(as_completed(function, calls, workers, ray_address, progress))
    return [results[i] for i in range(len(calls))]
