"""CPU threads by default (multiview.core.threads): the rule, affinity and cgroup v1/v2 quotas read from faked
files, the overrides in their order, the log line, the Trainer's use of it, and the OpenMP wait policy that
importing multiview sets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from multiview.core import threads
from multiview.core.threads import cgroup_cpu_quota, configure_threads, plan_threads, threads_for, usable_cpus


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No thread variables, 8 CPUs of affinity, no cgroup files, torch's default 64; threads restored after."""
    for name in (*threads.THREAD_ENV, *threads.LOCAL_SIZE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(threads, "CGROUP_ROOT", tmp_path / "cgroup")
    monkeypatch.setattr(threads, "PROC_SELF_CGROUP", tmp_path / "proc-self-cgroup")
    monkeypatch.setattr(threads, "_TORCH_DEFAULT", 64)
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_applied", before)  # the count now in place reads as ours, not the user's
    yield tmp_path
    torch.set_num_threads(before)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    "cpus, processes, workers, expected",
    [
        (8, 1, 0, 8),
        (8, 2, 0, 4),
        (8, 1, 2, 6),
        (8, 2, 3, 1),
        (2, 1, 1, 1),
        (2, 1, 0, 2),
        (0.5, 1, 0, 1),
        (2.5, 1, 0, 2),
        (16, 3, 1, 4),
        (1, 4, 2, 1),
    ],
)
def test_the_rule(cpus, processes, workers, expected):
    assert threads_for(cpus, processes, workers) == expected


def test_the_rule_refuses_nonsense():
    with pytest.raises(ValueError, match="processes=0"):
        threads_for(4, 0, 0)


def test_cgroup_v2_quota_tightest_of_the_cgroup_and_its_parents(tmp_path):
    root = tmp_path / "cg"
    write(tmp_path / "self", "0::/job/step\n")
    write(root / "job/step/cpu.max", "max 100000\n")  # no limit on the step itself
    write(root / "job/cpu.max", "250000 100000\n")  # 2.5 CPUs on the job
    assert cgroup_cpu_quota(root, tmp_path / "self") == (2.5, "cgroup v2 cpu.max 250000/100000")
    write(root / "cpu.max", "50000 100000\n")
    assert cgroup_cpu_quota(root, tmp_path / "self")[0] == 0.5


def test_cgroup_v1_quota_and_no_limit(tmp_path):
    root = tmp_path / "cg"
    write(tmp_path / "self", "4:memory:/x\n3:cpu,cpuacct:/slurm/job7\n0::/\n")
    write(root / "cpu,cpuacct/slurm/job7/cpu.cfs_quota_us", "-1\n")
    write(root / "cpu,cpuacct/slurm/job7/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(root, tmp_path / "self") is None
    write(root / "cpu,cpuacct/slurm/cpu.cfs_quota_us", "300000\n")
    write(root / "cpu,cpuacct/slurm/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(root, tmp_path / "self") == (3.0, "cgroup v1 cfs quota 300000/100000")


def test_cgroup_missing_or_broken_files_mean_no_quota(tmp_path):
    assert cgroup_cpu_quota(tmp_path / "nothing", tmp_path / "no-proc-file") is None
    root = tmp_path / "cg"
    write(tmp_path / "self", "0::/a\n")
    write(root / "a/cpu.max", "garbage\n")
    assert cgroup_cpu_quota(root, tmp_path / "self") is None
    write(root / "a/cpu.max", "100000 0\n")  # period 0
    assert cgroup_cpu_quota(root, tmp_path / "self") is None


def test_cgroup_path_of_another_namespace_falls_back_to_the_mount(tmp_path):
    root = tmp_path / "cg"  # a container sees its own cgroup at the mount, under the host's path name
    write(tmp_path / "self", "0::/kubepods/pod1/abc\n")
    write(root / "cpu.max", "200000 100000\n")
    assert cgroup_cpu_quota(root, tmp_path / "self")[0] == 2.0
    write(tmp_path / "self1", "2:cpu:/docker/123\n")  # v1, cgroup hierarchy "cpu" only
    write(root / "cpu/cpu.cfs_quota_us", "150000")
    write(root / "cpu/cpu.cfs_period_us", "100000")
    assert cgroup_cpu_quota(root, tmp_path / "self1")[0] == 1.5


def test_usable_cpus_affinity_then_quota(clean, monkeypatch):
    assert usable_cpus() == (8.0, "affinity")
    write(clean / "proc-self-cgroup", "0::/\n")
    write(clean / "cgroup/cpu.max", "200000 100000\n")
    assert usable_cpus() == (2.0, "cgroup v2 cpu.max 200000/100000; affinity 8")
    write(clean / "cgroup/cpu.max", "1600000 100000\n")  # a quota above the affinity set changes nothing
    assert usable_cpus() == (8.0, "affinity")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: (_ for _ in ()).throw(OSError("no")))
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert usable_cpus() == (3.0, "os.cpu_count")


def test_plan_divides_among_local_processes_and_workers(clean, monkeypatch):
    plan = plan_threads(workers=1)
    assert (plan.threads, plan.override) == (7, None)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert plan_threads(workers=1).threads == 3  # 8 / 2 processes - 1 worker
    assert plan_threads(processes=4).threads == 2  # an explicit count wins over the variable
    write(clean / "proc-self-cgroup", "0::/\n")
    write(clean / "cgroup/cpu.max", "100000 100000\n")
    assert plan_threads(workers=2).threads == 1  # at least one
    monkeypatch.setattr(threads, "_TORCH_DEFAULT", 1)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    write(clean / "cgroup/cpu.max", "max 100000\n")
    assert plan_threads().threads == 1  # never above torch's own default (e.g. physical cores)


def test_overrides_in_order(clean, monkeypatch):
    assert plan_threads(3).threads == 3 and plan_threads(3).override == "train.threads=3"
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert plan_threads(3).threads == 3  # the recipe wins over the environment
    plan = plan_threads()
    assert (plan.threads, plan.chosen, plan.override) == (5, 8, "OMP_NUM_THREADS=5")
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    monkeypatch.setenv("MKL_NUM_THREADS", "4,2")  # OpenMP's nested form: the first level
    assert plan_threads().override == "MKL_NUM_THREADS=4,2" and plan_threads().threads == 4
    monkeypatch.delenv("MKL_NUM_THREADS")
    assert plan_threads().override is None  # an unreadable value is ignored
    torch.set_num_threads(1 if threads._applied != 1 else 2)  # the user's own call after importing multiview
    user = torch.get_num_threads()
    assert plan_threads().override == f"torch.set_num_threads({user})" and plan_threads().threads == user


def test_configure_sets_torch_and_a_later_plan_recomputes(clean):
    plan = configure_threads(workers=6)  # 8 CPUs - 6 workers
    assert torch.get_num_threads() == plan.threads == 2
    assert configure_threads(workers=7).threads == 1  # our own earlier choice is not mistaken for the user's
    assert torch.get_num_threads() == 1


def test_log_line(clean):
    write(clean / "proc-self-cgroup", "0::/\n")
    write(clean / "cgroup/cpu.max", "250000 100000\n")
    assert (
        plan_threads(workers=1)
        .line()
        .startswith(
            "CPU threads: 2.5 CPUs usable (cgroup v2 cpu.max 250000/100000; affinity 8), 1 local process, "
            "1 loader worker each -> 1 torch thread"
        )
    )
    line = plan_threads(4, processes=2).line()
    assert (
        "2 local processes, 0 loader workers each -> 4 torch threads set by train.threads=4 (the default rule: 1)"
        in line
    )


def _python(code: str, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")} | env
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True).stdout


def test_importing_multiview_quiets_openmp_unless_set():
    code = "import multiview, os; print(os.environ['OMP_WAIT_POLICY'], os.environ['KMP_BLOCKTIME'])"
    assert _python(code).split() == ["PASSIVE", "0"]
    assert _python(code, OMP_WAIT_POLICY="ACTIVE").split() == ["ACTIVE", "0"]
    late = "import torch, multiview.core.threads as t; print(t.plan_threads().wait_policy)"
    assert _python(late).strip() == "PASSIVE (child processes only: torch was imported before multiview)"
