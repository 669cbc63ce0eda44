#!/usr/bin/env python3
"""Sweep throughput (issue #8): experiments/bench-sweep.yaml (8 conv-VAE trials) with --jobs 1 and --jobs 2 in
fresh runs directories, then the parallel efficiency and the runner's overhead per step over the bare training
step that `vaelab bench` measures with the same kernel threads (the runner gives each trial cores/jobs threads)
and as many benches at once as the sweep runs trials. That comparison moves with run-to-run noise (±25%); the
last column is the runner's overhead from the trials' own time split instead (status.yaml `time_split`: setup,
scalar logs, checkpoints, event and Parquet files over the time in training steps, in the same process).
Also the serial baseline, --jobs 1 on one kernel thread with the whole process held to one core (sched_setaffinity:
its batch-producer thread too, which ran on the second core before session 26), for the textbook efficiency
T(1 core) / (2 · T(jobs 2)); the first figure compares with --jobs 1 already using both cores through its kernels.
Several rounds (default 3), the three sweeps in a rotating order; each round's efficiencies, then their medians.

  python3 scripts/bench_sweep.py [ROUNDS]   (VAELAB_DATA as for the specs; run on an idle machine; ≈ 90 s a round)
"""
import json, os, subprocess, sys, tempfile, time
from statistics import median

import yaml

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# VAELAB_BIN: a copy of the binary, so that a rebuild during the run does not change what is measured.
vaelab = os.environ.get("VAELAB_BIN") or os.path.join(root, "target", "release", "vaelab")
spec = os.path.join(root, "experiments", "bench-sweep.yaml")
cores = os.cpu_count()
data = os.path.join(os.environ.get("VAELAB_DATA", "data"), "mnist")


def one_core():
    """The serial baseline on one core: the process and all its threads (a trial's batch producer too, which
    would otherwise run on the other core beside the trial) limited to the first CPU this script may use."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def bare_step_s(threads, side_by_side):
    """The bare training step at `threads` kernel threads, with `side_by_side` benches running at once (as the
    sweep runs its trials), so the runner's overhead is compared under the same sharing of caches and memory."""
    cmd = [vaelab, "bench", "--model", "conv", "--batch", "128", "--steps", "60", "--threads", str(threads), "--data", data]
    pin = one_core if threads == 1 and side_by_side == 1 else None
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=pin) for _ in range(side_by_side)]
    steps = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"vaelab bench failed ({p.returncode})")
        steps.append(128 / json.loads(out.strip().splitlines()[-1])["images_per_sec"])
    return sum(steps) / len(steps)


# (row label, --jobs, kernel threads per trial: None = the runner's cores / jobs)
SETTINGS = (("1", 1, None), ("2", 2, None), ("1, one core", 1, 1))


def sweep(jobs, kernel_threads):
    """One run of the 8-trial sweep in a fresh runs directory: its wall time and the trials' own figures."""
    with tempfile.TemporaryDirectory() as runs:
        env = dict(os.environ)
        if kernel_threads:
            env["RAYON_NUM_THREADS"] = str(kernel_threads)
        t = time.perf_counter()
        subprocess.run([vaelab, "run", spec, "--jobs", str(jobs), "--runs-dir", runs], check=True, capture_output=True, env=env,
                       preexec_fn=one_core if kernel_threads == 1 else None)
        wall = time.perf_counter() - t
        sweep_dir = next(os.scandir(os.path.join(runs, "bench-sweep"))).path
        trials = [yaml.safe_load(open(os.path.join(e.path, "status.yaml"))) for e in os.scandir(sweep_dir) if e.is_dir()]
    per_step = sum(s["wall_time_s"] for s in trials) / sum(s["steps"] for s in trials)
    # The trials' own split (status.yaml time_split): the rest (setup, scalar logs, checkpoints, event and
    # Parquet files) over the time in training steps, measured in the same process as the steps.
    split = {k: sum(s["time_split"][k] for s in trials) for k in ("steps_s", "eval_s", "other_s")}
    threads = kernel_threads or max(1, cores // jobs)
    return dict(wall=wall, per_step=per_step, split=split, bare=bare_step_s(threads, jobs), threads=threads, n=len(trials))


# Rounds, the settings in a different order each round, so that the machine's drift (±15% over minutes on this
# shared host) falls on all of them; the efficiencies are per round (each from one round's three sweeps), then
# their median — one pass of three sweeps gave 83–96% against one core on the same binary within an hour.
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
per_round, eff_jobs1, eff_core = [], [], []
for r in range(rounds):
    k = r % len(SETTINGS)
    rows = {label: sweep(jobs, kt) for label, jobs, kt in SETTINGS[k:] + SETTINGS[:k]}
    rows = {label: rows[label] for label, _, _ in SETTINGS}
    per_round.append(rows)
    eff_jobs1.append(100 * rows["1"]["wall"] / rows["2"]["wall"] / 2)
    eff_core.append(100 * rows["1, one core"]["wall"] / rows["2"]["wall"] / 2)
    print(f"round {r + 1}/{rounds}: sweep wall jobs 1 / jobs 2 / one core {rows['1']['wall']:.1f} / {rows['2']['wall']:.1f} / {rows['1, one core']['wall']:.1f} s; "
          f"efficiency {eff_jobs1[-1]:.0f}% vs jobs 1, {eff_core[-1]:.0f}% vs one core", flush=True)

print(f"\nmedians of {rounds} round(s):\n")
print(f"| jobs | kernel threads each | sweep wall s | trial s/step (incl. logging, Parquet, checkpoints, final eval) | bare step s (`vaelab bench`, same threads, as many at once as jobs) | vs bare | in-trial split: steps / eval / rest s | runner overhead (rest / steps) |")
print("|---|---|---|---|---|---|---|---|")
for label, _, _ in SETTINGS:
    rs = [rows[label] for rows in per_round]
    m = lambda f: median([f(r) for r in rs])
    sp = {k: m(lambda r: r["split"][k]) for k in ("steps_s", "eval_s", "other_s")}
    print(f"| {label} | {rs[0]['threads']} | {m(lambda r: r['wall']):.1f} | {m(lambda r: r['per_step']) * 1e3:.1f} ms | {m(lambda r: r['bare']) * 1e3:.1f} ms "
          f"| {m(lambda r: 100 * (r['per_step'] / r['bare'] - 1)):+.1f}% | {sp['steps_s']:.1f} / {sp['eval_s']:.1f} / {sp['other_s']:.1f} "
          f"| {m(lambda r: 100 * r['split']['other_s'] / r['split']['steps_s']):.2f}% |")
fmt = lambda xs: " / ".join(f"{x:.0f}%" for x in xs)
print(f"\n--jobs 2 vs --jobs 1: parallel efficiency {median(eff_jobs1):.0f}% median (rounds {fmt(eff_jobs1)}; {per_round[0]['1']['n']} trials)")
print(f"--jobs 2 vs one core (--jobs 1, RAYON_NUM_THREADS=1, held to one CPU): parallel efficiency {median(eff_core):.0f}% median (rounds {fmt(eff_core)})")
