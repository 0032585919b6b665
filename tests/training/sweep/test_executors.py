"""training/sweep/executors.py: scheduler addresses checked before anything runs, a cluster that cannot
be reached stops the sweep before it writes sweep.json, and a pool's worker watches its sweep."""

from __future__ import annotations

import os
import socket

import pytest

from mlknobs.errors import SchedulerAddressError, SweepBackendUnreachable
from mlknobs.training.sweep import Grid, SweepData, executors, sweep
from mlknobs.training.sweep.executors import check_scheduler_address
from mlknobs.training.sweep.worker import DiesWithSweep, watch_parent

SMALL = {"hidden_size": [16], "epochs": [1], "val_size": [2000]}

pytest.importorskip("distributed")


@pytest.mark.parametrize("address, words", [
    ("bogus://127.0.0.1:1", "unknown scheme 'bogus'"),
    ("inproc://1.2.3.4/5/6", "inside one process"),
    ("tcp://[::1", "not [SCHEME://]HOST:PORT"),
    ("tcp://127.0.0.1:99999", "from 1 to 65535"),
    ("tcp://127.0.0.1:0", "from 1 to 65535"),
    ("tcp://:8786", "needs a host"),
    ("tcp://host", "not [SCHEME://]HOST:PORT"),
    ("tcp://host:abc", "not [SCHEME://]HOST:PORT"),
    ("", "not [SCHEME://]HOST:PORT"),
    ("\x1b]0;pwned\x07://h:1", "\\x1b]0;pwned\\x07"),
])
def test_an_address_that_names_no_scheduler_is_refused_before_anything(address, words):
    with pytest.raises(SchedulerAddressError) as refused:
        check_scheduler_address(address)
    assert refused.value.address == address and words in str(refused.value)
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "127.0.0.1:8786", "tcp://[::1]:8786", "tls://h:1",
                                     "ws://h:1", "ucx://h:1"])
def test_addresses_distributed_can_reach_pass(address):
    check_scheduler_address(address)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]       # nothing listens there once the socket is closed


@pytest.mark.parametrize("address", [f"tcp://127.0.0.1:{closed_port()}", "tls://127.0.0.1:1", "ucx://127.0.0.1:1"])
def test_an_unreachable_scheduler_stops_the_sweep_before_sweep_json(synthetic_data_dir, tmp_path, monkeypatch,
                                                                    address):
    monkeypatch.setattr(executors, "DASK_CONNECT_TIMEOUT", "1s")
    out = tmp_path / "s"
    with pytest.raises(SweepBackendUnreachable) as refused:
        sweep(Grid.of(SMALL), out, data=SweepData(synthetic_data_dir), backend="dask", scheduler=address)
    assert refused.value.scheduler == address and "\n" not in str(refused.value)
    assert not (out / "sweep.json").exists() and not (out / "results.jsonl").exists()
    # The same command can run again as it is (no "already holds a sweep"): it fails the same way.
    with pytest.raises(SweepBackendUnreachable):
        sweep(Grid.of(SMALL), out, data=SweepData(synthetic_data_dir), backend="dask", scheduler=address)


def test_the_sweeps_own_process_is_never_watched():
    watch_parent(os.getpid())                    # returns: this is the sweep's process itself
    assert DiesWithSweep(lambda task: task, os.getpid())("a task") == "a task"
