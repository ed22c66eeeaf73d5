#!/usr/bin/env python3
"""Compile every kernels/*.cu to SASS with NVRTC for sm_80 and sm_90 and
write kernels/resources.tsv: registers, spill bytes and static shared memory
per __global__ kernel, from ptxas's verbose report (-Xptxas=-v).

No GPU is needed, only NVIDIA's NVRTC from PyPI:

    python3 -m venv /work/cudaenv
    /work/cudaenv/bin/pip install nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79
    /work/cudaenv/bin/python scripts/kernel_report.py            # rewrite the table
    /work/cudaenv/bin/python scripts/kernel_report.py --check    # compare, exit 1 on a difference

The library is found from the installed wheel (`nvidia.cuda_nvrtc`) or
given with --nvrtc / ACSLEUTH_NVRTC_LIB. tests/kernel_resources.rs does the
same compilation from Rust; both must agree on the table format:

    # nvrtc <major>.<minor>
    kernel<TAB>arch<TAB>registers<TAB>spill_stores<TAB>spill_loads<TAB>shared_bytes
"""
import argparse
import ctypes
import glob
import os
import re
import sys

ARCHES = ["sm_80", "sm_90"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KDIR = os.path.join(ROOT, "kernels")
TABLE = os.path.join(KDIR, "resources.tsv")


def find_nvrtc(explicit):
    if explicit:
        return explicit
    env = os.environ.get("ACSLEUTH_NVRTC_LIB")
    if env:
        return env
    import nvidia.cuda_nvrtc  # noqa: the PyPI wheel

    base = os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib")
    for name in sorted(os.listdir(base)):
        if re.fullmatch(r"libnvrtc\.so\.\d+", name):
            return os.path.join(base, name)
    raise SystemExit(f"no libnvrtc.so.N in {base}")


class Nvrtc:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        self.version = f"{major.value}.{minor.value}"

    def compile_log(self, src, name, arch):
        """Compile to SASS for `arch`; returns ptxas's log. Raises on errors."""
        prog = ctypes.c_void_p()
        rc = self.lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), name.encode(), 0, None, None)
        if rc != 0:
            raise RuntimeError(f"nvrtcCreateProgram({name}) = {rc}")
        opts = [f"--gpu-architecture={arch}", "-Xptxas=-v", f"--include-path={KDIR}", "--std=c++17"]
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = self.lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        self.lib.nvrtcGetProgramLog(prog, buf)
        self.lib.nvrtcDestroyProgram(ctypes.byref(prog))
        log = buf.value.decode(errors="replace")
        if rc != 0:
            raise RuntimeError(f"{name} for {arch} does not compile:\n{log}")
        return log


def parse_log(log):
    """ptxas -v lines → {kernel: (registers, spill_stores, spill_loads, shared)}."""
    out, cur = {}, None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            cur = m.group(1)
            out[cur] = [0, 0, 0, 0]
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            out[cur][1], out[cur][2] = int(m.group(1)), int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            out[cur][0] = int(m.group(1))
            m2 = re.search(r"(\d+) bytes smem", line)
            out[cur][3] = int(m2.group(1)) if m2 else 0
    return out


def table(nvrtc):
    rows = []
    for path in sorted(glob.glob(os.path.join(KDIR, "*.cu"))):
        src = open(path).read()
        for arch in ARCHES:
            res = parse_log(nvrtc.compile_log(src, os.path.basename(path), arch))
            for k in sorted(res):
                rows.append((k, arch, *res[k]))
    rows.sort(key=lambda r: (r[0], r[1]))
    lines = [f"# nvrtc {nvrtc.version}", "kernel\tarch\tregisters\tspill_stores\tspill_loads\tshared_bytes"]
    lines += ["\t".join(str(x) for x in r) for r in rows]
    return "\n".join(lines) + "\n", rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nvrtc", help="path to libnvrtc.so.N")
    ap.add_argument("--check", action="store_true", help="compare with the committed table")
    args = ap.parse_args()
    nvrtc = Nvrtc(find_nvrtc(args.nvrtc))
    text, rows = table(nvrtc)
    spills = [r for r in rows if r[3] or r[4]]
    if args.check:
        old = open(TABLE).read() if os.path.exists(TABLE) else ""
        if old != text:
            sys.stdout.write(text)
            raise SystemExit("kernels/resources.tsv is out of date; rerun scripts/kernel_report.py")
        print(f"kernels/resources.tsv is current ({len(rows)} rows, nvrtc {nvrtc.version})")
    else:
        with open(TABLE + ".tmp", "w") as f:
            f.write(text)
        os.replace(TABLE + ".tmp", TABLE)
        sys.stdout.write(text)
    if spills:
        raise SystemExit(f"register spills: {spills}")


if __name__ == "__main__":
    main()
