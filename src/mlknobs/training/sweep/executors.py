"""Where a sweep's runs execute: the `BACKENDS` table.

- "local": joblib's process pool (loky), one process per job; with one job, the runs take turns in
  the process that started the sweep. The pool's workers end with that process (DiesWithSweep).
- "dask": an existing Dask cluster (a scheduler address), or a LocalCluster on loopback started
  for the sweep (its workers end with this process: distributed watches their parent).

An executor is used as a context manager: entering it connects (a Dask cluster is reached or
started), so that a sweep that cannot reach its workers stops before it writes anything; `run`
then yields each run's outcome as it finishes (in any order). Both need the sweep extra (joblib,
distributed), imported only when a sweep runs on them: a missing one is MissingExtra, raised when
the executor is made. A scheduler address that cannot name a cluster (an unknown scheme, no
port, an in-process address) is a SchedulerAddressError then too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

from mlknobs.errors import (
    MissingExtra,
    SchedulerAddressError,
    SettingsError,
    SweepBackendUnreachable,
    SweepWorkerDied,
)
from mlknobs.text import error_line, one_line
from mlknobs.training.sweep.worker import DiesWithSweep, RunOutcome, RunTask
from mlknobs.training.sweep_settings import BACKEND_NAMES

DASK_CONNECT_TIMEOUT = "20s"      # how long to wait for an existing Dask scheduler
MESSAGE_CHARS = 300               # an error from a worker or the cluster, in a message
# The schemes distributed can reach a scheduler over from another process (not inproc://, which
# names a cluster inside one process).
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")

Runner = Callable[[RunTask], RunOutcome]


class LocalExecutor:
    """joblib's process pool (loky), one process per job; with one job, the runs take turns in this process."""

    def __init__(self, jobs: int, scheduler: str | None = None):
        if scheduler is not None:
            raise SettingsError([(None, "a scheduler address is for the dask backend")])
        self.jobs = jobs
        if jobs > 1:
            _require("joblib", "a sweep on several local processes")

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, runner: Runner, tasks: list[RunTask]) -> Iterator[RunOutcome]:
        if self.jobs == 1 or len(tasks) <= 1:
            for task in tasks:
                yield runner(task)
            return
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        parallel = Parallel(n_jobs=min(self.jobs, len(tasks)), backend="loky", batch_size=1,
                            return_as="generator_unordered")
        in_worker = DiesWithSweep(runner, os.getpid())
        try:
            yield from parallel(delayed(in_worker)(task) for task in tasks)
        except TerminatedWorkerError as error:
            # joblib stops the whole pool and cannot say which run's process died.
            raise SweepWorkerDied(error_line(error, MESSAGE_CHARS)) from error


class DaskExecutor:
    """Runs on an existing Dask cluster (`scheduler` address) or on a LocalCluster started here.

    The LocalCluster listens on loopback only, with `jobs` worker processes of one thread each. A
    worker that dies takes its run with it: the scheduler gives the run to another worker (up to
    distributed's `allowed-failures`, 3 by default); after that the run is recorded as failed, and
    retryable.
    """

    def __init__(self, jobs: int, scheduler: str | None = None):
        _require("distributed", "a sweep on Dask")
        if scheduler is not None:
            check_scheduler_address(scheduler)
        self.jobs, self.scheduler = jobs, scheduler
        self.client = self.cluster = None

    def __enter__(self) -> DaskExecutor:
        """Reach the scheduler, or start a LocalCluster: SweepBackendUnreachable in one line if that fails."""
        import logging

        from distributed import Client, LocalCluster

        try:
            if self.scheduler is None:
                self.cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=True,
                                            host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                            silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
            else:
                self.client = Client(self.scheduler, timeout=DASK_CONNECT_TIMEOUT)
        except Exception as error:    # a refused or timed-out connection, TLS without certificates, no UCX, ...
            self.__exit__()
            reason = error_line(error, MESSAGE_CHARS)
            if not isinstance(error, OSError):     # a refusal or a timeout says enough; anything else, its kind
                reason = f"{type(error).__name__}: {reason}"
            raise SweepBackendUnreachable(self.scheduler, reason) from error
        return self

    def __exit__(self, *exc) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def run(self, runner: Runner, tasks: list[RunTask]) -> Iterator[RunOutcome]:
        if not tasks:
            return
        from distributed import as_completed

        client = self.client
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
                    yield RunOutcome(task.run_id, "failed", retryable=True,
                                     error=f"lost its Dask worker: {type(error).__name__}: "
                                           f"{error_line(error, MESSAGE_CHARS)}")
        finally:
            if futures:
                client.cancel(list(futures))


BACKENDS = {"local": LocalExecutor, "dask": DaskExecutor}
assert tuple(BACKENDS) == BACKEND_NAMES, "training.sweep_settings.BACKEND_NAMES must list exactly the backends"


def check_scheduler_address(address: str) -> None:
    """SchedulerAddressError unless `address` can name a Dask scheduler in another process.

    As distributed reads it: [SCHEME://]HOST:PORT, tcp:// when no scheme is given, an IPv6 host
    in brackets ([::1]:8786), a port from 1 to 65535.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address, strict=False)
        host, port = parse_host_port(location) if scheme in SCHEDULER_SCHEMES else ("", 0)
    except (ValueError, TypeError) as error:
        raise SchedulerAddressError(address, f"is not [SCHEME://]HOST:PORT ({error_line(error, MESSAGE_CHARS)})") \
            from None
    if scheme == "inproc":
        raise SchedulerAddressError(address, "names a cluster inside one process; give its scheduler's tcp:// "
                                             "address")
    if scheme not in SCHEDULER_SCHEMES:
        raise SchedulerAddressError(address, f"has an unknown scheme {one_line(scheme, 20)!r} "
                                             f"(known: {', '.join(SCHEDULER_SCHEMES)})")
    if not host or not 0 < port < 65536:
        raise SchedulerAddressError(address, "needs a host and a port from 1 to 65535")


def _require(module: str, feature: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtra(feature=feature, extra="sweep", module=module)
