"""Python API vs command line on the same input: wall time and peak RSS,
measured side by side (interleaved, each run in a fresh process).

    .venv/bin/python scripts/bench_python.py [--reference R] [--target T] [--repeats 3]

Defaults: the Kang benchmark as the README's accuracy table builds it
(reference = CTRL cells that are not B or NK, target = all STIM cells), from
/tmp/kang_ref.h5ad and /tmp/kang_tgt.h5ad. Each repeat runs
`acsleuth detect --device cpu` and then a Python process that reads the
same two .h5ad files with anndata and calls `acsleuth.detect(...,
device="cpu")`. Prints one line per run and the medians, and checks that
the two gave the same scores and calls. Two comparisons:

- whole process: wall, CPU and peak RSS (the child's maximum resident set,
  wait4) of each process, both including reading the inputs; the Python
  process also holds the interpreter with numpy, pandas and anndata, and
  the caller's AnnData objects, which the CLI never has;
- the call: the wall time of `acsleuth.detect(...)` itself, and the peak
  RSS it adds to the process (the high-water mark is reset to the current
  RSS just before the call, /proc/self/clear_refs, and read after it),
  against the CLI's whole wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

PY = """
import json, sys, time
t0 = time.monotonic()
import anndata as ad, acsleuth, numpy as np
def mib(key):
    with open("/proc/self/status") as f:
        return float(f.read().split(key + ":")[1].split()[0]) / 1024
t1 = time.monotonic()
rss_imports = mib("VmRSS")
ref = ad.read_h5ad(sys.argv[1]); tgt = ad.read_h5ad(sys.argv[2])
t2 = time.monotonic()
rss_before, hwm_before = mib("VmRSS"), mib("VmHWM")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the high-water mark starts again from the current RSS
acsleuth.detect(ref, tgt, device="cpu", progress=False, threads=int(sys.argv[4]) if sys.argv[4] != "0" else None)
t3 = time.monotonic()
call_peak = mib("VmHWM")
np.save(sys.argv[3], tgt.obs["acsleuth_score"].to_numpy(np.float32))
np.save(sys.argv[3] + ".calls.npy", tgt.obs["acsleuth_anomaly"].to_numpy(bool))
print(json.dumps(dict(imports_s=t1 - t0, read_s=t2 - t1, call_s=t3 - t2, rss_imports=rss_imports,
                      rss_before=rss_before, hwm_before=hwm_before, call_added=call_peak - rss_before)), file=sys.stderr)
"""


def measure(cmd, env=None):
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of one
    child process; CPU time is the steadier figure on a shared machine."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed:\n{err}")
    return wall, ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime, err.strip().splitlines()[-1:] if err.strip() else []


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default="/tmp/kang_ref.h5ad")
    ap.add_argument("--target", default="/tmp/kang_tgt.h5ad")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="worker threads of both (0 = one per core)")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "acsleuth"))
    a = ap.parse_args()
    import numpy as np
    import pandas as pd

    env = dict(os.environ, ACSLEUTH_QUIET="1")
    rows = {"cli": [], "python": []}
    calls = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(a.repeats):
            out = os.path.join(d, f"cli{i}")
            cmd = [a.bin, "detect", "--reference", a.reference, "--target", a.target, "--out", out, "--device", "cpu"]
            if a.threads:
                cmd += ["--threads", str(a.threads)]
            w, rss, cpu, _ = measure(cmd, env)
            rows["cli"].append((w, rss, cpu))
            print(f"cli     run {i}: {w:7.2f} s wall {cpu:7.2f} s CPU {rss:8.1f} MiB", flush=True)
            npy = os.path.join(d, f"py{i}.npy")
            w, rss, cpu, note = measure([sys.executable, "-c", PY, a.reference, a.target, npy, str(a.threads)], env)
            c = json.loads(note[0])
            rss = max(rss, c["hwm_before"])  # the reset hides an earlier peak from wait4
            rows["python"].append((w, rss, cpu))
            calls.append(c)
            print(f"python  run {i}: {w:7.2f} s wall {cpu:7.2f} s CPU {rss:8.1f} MiB  (imports {c['imports_s']:.2f} s, "
                  f"{c['rss_imports']:.0f} MiB; read {c['read_s']:.2f} s, {c['rss_before']:.0f} MiB before the call; "
                  f"the call {c['call_s']:.2f} s, +{c['call_added']:.0f} MiB)", flush=True)
            tsv = pd.read_csv(os.path.join(out, "scores.tsv"), sep="\t", index_col=0)
            same = np.array_equal(tsv["score"].to_numpy(np.float32), np.load(npy)) and np.array_equal(
                tsv["anomaly"].to_numpy(bool), np.load(npy + ".calls.npy")
            )
            print(f"        identical scores and calls: {same}", flush=True)
    med = {k: [statistics.median(x[j] for x in v) for j in range(3)] for k, v in rows.items()}
    (cw, cr, cc), (pw, pr, pc) = med["cli"], med["python"]
    print(f"median  cli {cw:.2f} s wall {cc:.2f} s CPU {cr:.1f} MiB | python {pw:.2f} s wall {pc:.2f} s CPU {pr:.1f} MiB | "
          f"python/cli: wall {100 * (pw / cw - 1):+.1f} %, CPU {100 * (pc / cc - 1):+.1f} %, peak RSS {100 * (pr / cr - 1):+.1f} %")
    m = {k: statistics.median(c[k] for c in calls) for k in calls[0]}
    print(f"median  the call: {m['call_s']:.2f} s wall vs the CLI's {cw:.2f} s ({100 * (m['call_s'] / cw - 1):+.1f} %); "
          f"adds {m['call_added']:.1f} MiB to the process vs the CLI's {cr:.1f} MiB peak ({100 * (m['call_added'] / cr - 1):+.1f} %); "
          f"before it: imports {m['imports_s']:.2f} s and {m['rss_imports']:.0f} MiB, reading {m['read_s']:.2f} s, "
          f"{m['rss_before']:.0f} MiB held")


if __name__ == "__main__":
    main()
