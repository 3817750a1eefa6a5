"""The Cortex-M55 oracle: build bare-metal programs with arm-none-eabi-gcc and run them on QEMU's
mps3-an547 (a Cortex-M55 with Helium), files in and out over semihosting (DESIGN §7).

    elf = build("frontend", [csrc/m55/frontend_app.c], libs=[cmsis_dsp_lib(...)], opt="Os")
    outputs = run(elf, {"job.bin": data}, ["stages.bin"])

Programs use csrc/m55/startup.c (vector table, reset handler) and csrc/m55/m55.ld (ITCM code, DDR data).
Builds are cached by the SHA-256 of their sources and flags under N6EMU_M55_CACHE (default a folder in
the system temp dir). `missing()` names what is absent (toolchain, QEMU) so a test can skip saying so;
.ci/run installs both from Debian. QEMU checks the core's arithmetic, not the board (no NPU, no caches).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from emu import testkit

# toolchain, CPU flags, start-up/linker files and the QEMU command line: one home, emu/testkit.py (which builds
# the firmware test kit for the same core)
REPO = testkit.REPO
M55_DIR = testkit.M55_DIR
GCC = testkit.M55_GCC
AR = testkit.M55_AR
QEMU = testkit.QEMU
CPU_FLAGS = testkit.M55_CPU_FLAGS
OPT_FLAGS = {"Os": ["-Os"], "Ofast": ["-Ofast"]}
# the ST application's C dialect: gcc's default GNU C (so -ffp-contract=fast: a*b+c may become one vfma)
COMMON_FLAGS = ["-std=gnu11", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wno-unused-function"]
LINK_FLAGS = testkit.M55_LINK_FLAGS + ["-T", str(testkit.M55_LINKER_SCRIPT)]


def missing():
    """None when the cross compiler, newlib and QEMU are all here, else a one-line reason naming the packages."""
    return testkit.m55_missing("Cortex-M55 oracle")


def cache_dir() -> Path:
    d = Path(os.environ.get("N6EMU_M55_CACHE", Path(tempfile.gettempdir()) / "n6emu-m55"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _digest(parts) -> str:
    """Content hash of the build inputs: files by content, include folders by every header below them."""
    h = hashlib.sha256()
    for p in parts:
        if os.path.isfile(p):
            h.update(Path(p).read_bytes())
        elif os.path.isdir(p):
            for header in sorted(Path(p).rglob("*.h")):
                h.update(str(header.relative_to(p)).encode() + header.read_bytes())
        h.update(str(p).encode() + b"\0")
    return h.hexdigest()[:20]


def _compile(src, out, includes, defines, opt):
    cmd = [GCC, *CPU_FLAGS, *OPT_FLAGS[opt], *COMMON_FLAGS, *[f"-I{i}" for i in includes],
           *[f"-D{d}" for d in defines], "-c", str(src), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"arm-none-eabi-gcc failed on {src}:\n{r.stderr[-4000:]}")


def static_lib(name, sources, includes=(), defines=(), opt="Os") -> Path:
    """Compile C sources into lib<name>.a for the Cortex-M55 (cached); compiled two at a time."""
    sources = [Path(s) for s in sources]
    key = _digest([name, opt, *CPU_FLAGS, *COMMON_FLAGS, *includes, *defines, *sources])
    lib = cache_dir() / f"lib{name}-{opt}-{key}.a"
    if lib.is_file():
        return lib
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cache_dir()))
    from concurrent.futures import ThreadPoolExecutor
    objs = [work / f"{i:04d}_{s.stem}.o" for i, s in enumerate(sources)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        list(ex.map(lambda so: _compile(so[0], so[1], includes, defines, opt), zip(sources, objs)))
    tmp = lib.with_suffix(".tmp")
    subprocess.run([AR, "rcs", str(tmp), *map(str, objs)], check=True, capture_output=True)
    os.replace(tmp, lib)
    shutil.rmtree(work, ignore_errors=True)
    return lib


def build(name, sources, includes=(), defines=(), libs=(), opt="Os") -> Path:
    """Link a bare-metal ELF from `sources` + startup.c + static libs (cached by content)."""
    sources = [Path(s) for s in sources] + [M55_DIR / "startup.c"]
    key = _digest([name, opt, *CPU_FLAGS, *COMMON_FLAGS, *LINK_FLAGS, M55_DIR / "m55.ld", *includes, *defines,
                   *sources, *libs])
    elf = cache_dir() / f"{name}-{opt}-{key}.elf"
    if elf.is_file():
        return elf
    tmp = elf.with_suffix(".tmp")
    cmd = [GCC, *CPU_FLAGS, *OPT_FLAGS[opt], *COMMON_FLAGS, *[f"-I{i}" for i in includes],
           *[f"-D{d}" for d in defines], *map(str, sources), *map(str, libs), *LINK_FLAGS, "-lm", "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"arm-none-eabi-gcc failed linking {name}:\n{r.stderr[-4000:]}")
    os.replace(tmp, elf)
    return elf


def run(elf, inputs: dict, outputs, timeout=600) -> dict:
    """Run `elf` on mps3-an547 in a fresh folder holding `inputs` ({file name: bytes}); return the bytes of
    each name in `outputs`. The program must print `m55: ok` last; anything else is an error with its output."""
    with tempfile.TemporaryDirectory(prefix="m55-run-") as d:
        for name, data in inputs.items():
            Path(d, name).write_bytes(bytes(data))
        cmd = testkit.qemu_command(elf)
        r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        text = (r.stdout + r.stderr).strip()
        if r.returncode != 0 or not text.endswith("m55: ok"):
            raise RuntimeError(f"{Path(elf).name} on QEMU failed (exit {r.returncode}): {text[-2000:]}")
        return {name: Path(d, name).read_bytes() for name in outputs}
