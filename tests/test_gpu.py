"""One GPU per job: free per-GPU locks are taken in order; a pinned process is left alone."""

import os
import subprocess
import sys

from normlab import gpu


def test_claim_one_takes_a_free_gpu_per_process(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    code = ("import os, sys, time; from normlab import gpu; i = gpu.claim_one(3, sys.argv[1]); "
            "print(i, os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True); time.sleep(3)")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(3)]
    outs = sorted(p.stdout.readline().split()[0] for p in procs)
    for p in procs:
        p.wait()
    assert outs == ["0", "1", "2"]


def test_pinned_or_single_gpu_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert gpu.claim_one(4, tmp_path) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu.claim_one(1, tmp_path) is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_will_use_cuda():
    assert gpu.will_use_cuda("cuda") and not gpu.will_use_cuda("cpu")
    assert gpu.will_use_cuda("auto") == (gpu.count() > 0)
