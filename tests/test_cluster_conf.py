"""The one-node SLURM helper without starting daemons: its configuration and its job record parser."""
from __future__ import annotations

import pytest

import slurm_cluster as cluster


def test_slurm_conf_has_what_a_one_node_cluster_needs(tmp_path):
    conf = cluster.render_slurm_conf(tmp_path, "node1", cpus=4, real_memory_mb=8000, gpus=1, partition="debug")
    lines = set(conf.splitlines())
    for needed in ("AuthType=auth/munge", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
                   "SelectType=select/cons_tres", "AccountingStorageType=accounting_storage/none",
                   "JobCompType=jobcomp/filetxt", f"JobCompLoc={tmp_path / 'jobcomp.txt'}", "GresTypes=gpu",
                   f"StateSaveLocation={tmp_path / 'state'}", "SlurmctldHost=node1(127.0.0.1)"):
        assert needed in lines, needed
    assert "NodeName=node1 NodeAddr=127.0.0.1 CPUs=4 RealMemory=8000 Gres=gpu:1 State=UNKNOWN" in lines
    assert "PartitionName=debug Nodes=node1 Default=YES MaxTime=INFINITE State=UP" in lines
    assert cluster.MARKER in lines
    no_gpu = cluster.render_slurm_conf(tmp_path, "node1", 4, 8000)
    assert "GresTypes=gpu" not in no_gpu and "Gres=" not in no_gpu


def test_gres_conf_gives_each_stand_in_gpu_a_device_file():
    text = cluster.render_gres_conf("n", 2)
    assert text.splitlines()[1:] == ["NodeName=n Name=gpu File=/dev/null", "NodeName=n Name=gpu File=/dev/zero"]
    with pytest.raises(cluster.ClusterError, match="between 1 and"):
        cluster.render_gres_conf("n", 9)


def test_jobcomp_lines_are_parsed_with_spaces_in_values(tmp_path):
    path = tmp_path / "jobcomp.txt"
    path.write_text("JobId=7 UserId=root(0) Name=my job JobState=FAILED Partition=debug ExitCode=42:0 \n"
                    "JobId=8 UserId=root(0) Name=x JobState=COMPLETED ExitCode=0:0 \n")
    jobs = cluster.read_jobcomp(path)
    assert [j["JobId"] for j in jobs] == ["7", "8"]
    assert jobs[0]["Name"] == "my job" and jobs[0]["JobState"] == "FAILED" and jobs[0]["ExitCode"] == "42:0"
    assert cluster.read_jobcomp(tmp_path / "absent.txt") == []


def test_a_foreign_slurm_conf_is_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "ETC_SLURM", tmp_path)
    monkeypatch.setattr(cluster, "ensure_packages", lambda **kw: 0.0)
    (tmp_path / "slurm.conf").write_text("ClusterName=site\n")
    with pytest.raises(cluster.ClusterError, match="not written by star-repro"):
        cluster.start(tmp_path / "state")
    assert (tmp_path / "slurm.conf").read_text() == "ClusterName=site\n"
