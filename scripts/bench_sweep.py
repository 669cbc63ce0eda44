#!/usr/bin/env python3
"""Sweep throughput (issue #8): experiments/bench-sweep.yaml (8 conv-VAE trials) with --jobs 1 and --jobs 2 in
fresh runs directories, then the parallel efficiency and the runner's overhead per step over the bare training
step that `vaelab bench` measures with the same kernel threads (the runner gives each trial cores/jobs threads)
and as many benches at once as the sweep runs trials. That comparison moves with run-to-run noise (±25%); the
last column is the runner's overhead from the trials' own time split instead (status.yaml `time_split`: setup,
scalar logs, checkpoints, event and Parquet files over the time in training steps, in the same process).
Also the serial baseline, --jobs 1 on one kernel thread (one core), for the textbook efficiency T(1 core) / (2 ·
T(jobs 2)); the first figure compares with --jobs 1 already using both cores through its kernels.

  python3 scripts/bench_sweep.py            (VAELAB_DATA as for the specs; run on an idle machine)
"""
import json, os, subprocess, sys, tempfile, time

import yaml

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# VAELAB_BIN: a copy of the binary, so that a rebuild during the run does not change what is measured.
vaelab = os.environ.get("VAELAB_BIN") or os.path.join(root, "target", "release", "vaelab")
spec = os.path.join(root, "experiments", "bench-sweep.yaml")
cores = os.cpu_count()
data = os.path.join(os.environ.get("VAELAB_DATA", "data"), "mnist")


def bare_step_s(threads, side_by_side):
    """The bare training step at `threads` kernel threads, with `side_by_side` benches running at once (as the
    sweep runs its trials), so the runner's overhead is compared under the same sharing of caches and memory."""
    cmd = [vaelab, "bench", "--model", "conv", "--batch", "128", "--steps", "60", "--threads", str(threads), "--data", data]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(side_by_side)]
    steps = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"vaelab bench failed ({p.returncode})")
        steps.append(128 / json.loads(out.strip().splitlines()[-1])["images_per_sec"])
    return sum(steps) / len(steps)


rows, bare_by_setting = {}, {}
# (row label, --jobs, kernel threads per trial: None = the runner's cores / jobs)
for label, jobs, kernel_threads in (("1", 1, None), ("2", 2, None), ("1, one core", 1, 1)):
    with tempfile.TemporaryDirectory() as runs:
        env = dict(os.environ)
        if kernel_threads:
            env["RAYON_NUM_THREADS"] = str(kernel_threads)
        t = time.perf_counter()
        subprocess.run([vaelab, "run", spec, "--jobs", str(jobs), "--runs-dir", runs], check=True, capture_output=True, env=env)
        wall = time.perf_counter() - t
        sweep = next(os.scandir(os.path.join(runs, "bench-sweep"))).path
        trials = [yaml.safe_load(open(os.path.join(e.path, "status.yaml"))) for e in os.scandir(sweep) if e.is_dir()]
        per_step = sum(s["wall_time_s"] for s in trials) / sum(s["steps"] for s in trials)
        # The trials' own split (status.yaml time_split): the rest (setup, scalar logs, checkpoints, event and
        # Parquet files) over the time in training steps, measured in the same process as the steps.
        split = {k: sum(s["time_split"][k] for s in trials) for k in ("steps_s", "eval_s", "other_s")}
        threads = kernel_threads or max(1, cores // jobs)
        if (threads, jobs) not in bare_by_setting:
            bare_by_setting[threads, jobs] = bare_step_s(threads, jobs)
        rows[label] = dict(wall=wall, per_step=per_step, split=split, bare=bare_by_setting[threads, jobs], threads=threads, n=len(trials))

speedup = rows["1"]["wall"] / rows["2"]["wall"]
print(f"| jobs | kernel threads each | sweep wall s | trial s/step (incl. logging, Parquet, checkpoints, final eval) | bare step s (`vaelab bench`, same threads, as many at once as jobs) | vs bare | in-trial split: steps / eval / rest s | runner overhead (rest / steps) |")
print("|---|---|---|---|---|---|---|---|")
for label, r in rows.items():
    sp = r["split"]
    print(f"| {label} | {r['threads']} | {r['wall']:.1f} | {r['per_step'] * 1e3:.1f} ms | {r['bare'] * 1e3:.1f} ms | {100 * (r['per_step'] / r['bare'] - 1):+.1f}% "
          f"| {sp['steps_s']:.1f} / {sp['eval_s']:.1f} / {sp['other_s']:.1f} | {100 * sp['other_s'] / sp['steps_s']:.2f}% |")
print(f"\n--jobs 2 vs --jobs 1: speedup {speedup:.2f}×, parallel efficiency {100 * speedup / 2:.0f}% ({rows['1']['n']} trials)")
serial = rows["1, one core"]["wall"] / rows["2"]["wall"]
print(f"--jobs 2 vs one core (--jobs 1, RAYON_NUM_THREADS=1): speedup {serial:.2f}×, parallel efficiency {100 * serial / 2:.0f}%")
