"""Where a sweep's runs execute: the `BACKENDS` table.

- "local": joblib's process pool (loky), one process per job; with one job, the runs take turns in
  the process that started the sweep.
- "dask": an existing Dask cluster (a scheduler address), or a LocalCluster on loopback started
  for the sweep.

An executor yields each run's outcome as it finishes (in any order). Both need the sweep extra
(joblib, distributed), imported only when a sweep runs on them: a missing one is MissingExtra,
raised when the executor is made, before any file is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

from mlknobs.errors import MissingExtra, SettingsError, SweepBackendUnreachable, SweepWorkerDied
from mlknobs.text import error_line
from mlknobs.training.sweep.worker import RunOutcome, RunTask

DASK_CONNECT_TIMEOUT = "20s"      # how long to wait for an existing Dask scheduler
ERROR_CHARS = 300                 # an error from a worker or the cluster, as recorded

Runner = Callable[[RunTask], RunOutcome]


class LocalExecutor:
    """joblib's process pool (loky), one process per job; with one job, the runs take turns in this process."""

    def __init__(self, jobs: int, scheduler: str | None = None):
        if scheduler is not None:
            raise SettingsError([(None, "a scheduler address is for the dask backend")])
        self.jobs = jobs
        if jobs > 1:
            _require("joblib", "a sweep on several local processes")

    def run(self, runner: Runner, tasks: list[RunTask]) -> Iterator[RunOutcome]:
        if self.jobs == 1 or len(tasks) <= 1:
            for task in tasks:
                yield runner(task)
            return
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        parallel = Parallel(n_jobs=min(self.jobs, len(tasks)), backend="loky", batch_size=1,
                            return_as="generator_unordered")
        try:
            yield from parallel(delayed(runner)(task) for task in tasks)
        except TerminatedWorkerError as error:
            # joblib stops the whole pool and cannot say which run's process died.
            raise SweepWorkerDied(error_line(error, ERROR_CHARS)) from error


class DaskExecutor:
    """Runs on an existing Dask cluster (`scheduler` address) or on a LocalCluster started here.

    The LocalCluster listens on loopback only, with `jobs` worker processes of one thread each. A
    worker that dies takes its run with it: the scheduler gives the run to another worker (up to
    distributed's `allowed-failures`, 3 by default); after that the run is recorded as failed.
    """

    def __init__(self, jobs: int, scheduler: str | None = None):
        _require("distributed", "a sweep on Dask")
        self.jobs, self.scheduler = jobs, scheduler

    def run(self, runner: Runner, tasks: list[RunTask]) -> Iterator[RunOutcome]:
        import logging

        from distributed import Client, LocalCluster, as_completed

        cluster = None
        try:
            if self.scheduler is None:
                cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
                client = Client(cluster)
            else:
                client = Client(self.scheduler, timeout=DASK_CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as error:
            if cluster is not None:
                cluster.close()
            raise SweepBackendUnreachable(self.scheduler, error_line(error, ERROR_CHARS)) from error
        token = uuid.uuid4().hex[:8]     # keys unique to this sweep on a long-lived cluster
        futures = {}
        try:
            for task in tasks:
                futures[client.submit(runner, task, key=f"mlknobs-{task.run_id}-{token}", pure=False)] = task
            for future in as_completed(futures):
                task = futures[future]
                try:
                    yield future.result()
                except Exception as error:    # KilledWorker, a lost connection, ...
                    yield RunOutcome(task.run_id, "failed", error=f"lost its Dask worker: {type(error).__name__}: "
                                                                  f"{error_line(error, ERROR_CHARS)}")
        finally:
            if futures:
                client.cancel(list(futures))
            client.close()
            if cluster is not None:
                cluster.close()


BACKENDS = {"local": LocalExecutor, "dask": DaskExecutor}


def _require(module: str, feature: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtra(feature=feature, extra="sweep", module=module)
