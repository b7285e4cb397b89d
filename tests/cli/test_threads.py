"""antisd.cli.threads: the thread count (--threads, $ANTISD_THREADS, the user's OMP_NUM_THREADS, the CPUs this process may
use), the environment set before torch loads, and the setting applied and logged once through the console script."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from antisd.cli import threads

THREAD_VARS = ("ANTISD_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME",
               "TOKENIZERS_PARALLELISM")


@pytest.fixture
def clean_env(monkeypatch):
    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_count_follows_flag_then_env_then_the_users_omp_setting_then_the_cpus(clean_env):
    cpus = len(os.sched_getaffinity(0))
    assert threads.available_cpus() <= cpus and threads.requested() == threads.available_cpus()
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert threads.requested() == 3  # the user's own OpenMP setting wins over the default
    clean_env.setenv("ANTISD_THREADS", "5")
    assert threads.requested() == 5
    assert threads.requested("2") == 2 and threads.requested("auto") == threads.available_cpus()
    assert threads.requested("off") is None
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match="expected a number of threads >= 1, auto or off"):
            threads.requested(bad)


def test_environment_is_set_only_where_the_user_did_not(clean_env):
    clean_env.setenv("OMP_WAIT_POLICY", "ACTIVE")
    done = threads.configure_env(2)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and "OMP_WAIT_POLICY" not in done
    assert os.environ["OMP_NUM_THREADS"] == "2" and os.environ["KMP_BLOCKTIME"] == "0"
    assert threads.configure_env(None) == {}


def test_threads_flag_is_taken_out_of_any_command():
    assert threads.pop_threads_flag(["train", "--threads", "1", "--max_steps", "2"]) == (
        ["train", "--max_steps", "2"], "1")
    assert threads.pop_threads_flag(["eval", "--threads=off"]) == (["eval"], "off")
    with pytest.raises(ValueError, match="--threads needs a value"):
        threads.pop_threads_flag(["train", "--threads"])


def test_cgroup_quota_lowers_the_count(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None


def _console(args, extra_env=None):
    """``antisd ARGS`` as the console script runs it, then torch's thread count and the OpenMP variables."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    probe = ("import os, sys\n"
             "from antisd.cli.entry import main\n"
             "rc = main(sys.argv[1:])\n"
             "import torch\n"
             "print(rc, torch.get_num_threads(), os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OMP_NUM_THREADS'))\n")
    return subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                          env={**env, **(extra_env or {})}, timeout=300)


def test_the_console_script_applies_and_logs_the_setting_once():
    """A train command that stops at a bad value (exit 2) still ran the thread set-up: OpenMP's wait policy is
    passive, torch uses the threads asked for, and one log line says so."""
    done = _console(["train", "--threads", "1", "--max_steps", "two"])
    rc, count, policy, omp = done.stdout.split()
    assert (rc, count, policy, omp) == ("2", "1", "PASSIVE", "1"), done.stderr
    assert done.stderr.count("CPU threads: 1 (of") == 1 and "OpenMP wait policy PASSIVE" in done.stderr
    off = _console(["train", "--max_steps", "two"], {"ANTISD_THREADS": "off"})
    assert off.stdout.split()[2] == "None" and "CPU threads: left to torch" in off.stderr
    bad = _console(["train", "--threads", "0", "--max_steps", "two"])
    assert bad.stdout.split()[0] == "2" and "antisd train: error: --threads='0' is not valid" in bad.stderr
