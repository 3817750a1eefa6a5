"""Build and run the firmware test kit (csrc/testkit/n6_testkit.c) on a vectors folder written by `n6emu vectors`.

    code, lines = build_and_run("vectors/", target="host")    # gcc, run natively
    code, lines = build_and_run("vectors/", target="m55")     # arm-none-eabi-gcc, QEMU mps3-an547 (Cortex-M55)

The kit is compiled from the vectors folder's generated n6_vectors.c (which includes every <case>.h, model.h and
frontend.h), csrc/testkit/n6_testkit.c and the C twins (csrc/kernels_s8.c, frontend_st.c, helium_f16.c,
helium_f32.c) as C99 with -Wall -Wextra -Werror and IEEE float semantics (-fno-fast-math -ffp-contract=off: no
implicit FMA, which would change the front end's floats). It prints one PASS/FAIL/SKIP line per vector and
"N passed, M failed"; `lines` are its output lines and `code` its exit status (0: every vector passed).

The Cortex-M55 build is bare metal: csrc/m55/startup.c (vector table, semihosting) and csrc/m55/m55.ld with one
change, read-only data in DDR instead of the 2 MB FPGA SRAM (the vectors of two 1-second clips hold 2.3 MB of
golden arrays), written next to the ELF. Output comes back over semihosting. The toolchain settings and the QEMU
command line are shared with the test oracle (tests/m55.py).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from emu.errors import N6Error

REPO = Path(__file__).resolve().parent.parent
CSRC = REPO / "csrc"
KIT_DIR = CSRC / "testkit"
M55_DIR = CSRC / "m55"
TARGETS = ("host", "m55")
TWIN_SOURCES = ("kernels_s8.c", "frontend_st.c", "helium_f16.c", "helium_f32.c")
# the kit's C dialect and float semantics on every target (the cffi twins use the same float flags)
C_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fno-fast-math", "-ffp-contract=off"]
HOST_CC = "gcc"

# Cortex-M55 toolchain and QEMU (shared with tests/m55.py)
M55_GCC = "arm-none-eabi-gcc"
M55_AR = "arm-none-eabi-ar"
QEMU = "qemu-system-arm"
M55_INSTALL = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
M55_CPU_FLAGS = ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"]
# newlib-nano with semihosting (librdimon), our own start-up code; -u _printf_float: %g in the kit's FAIL lines
M55_LINK_FLAGS = ["--specs=nano.specs", "--specs=rdimon.specs", "-nostartfiles", "-Wl,--gc-sections"]
M55_LINKER_SCRIPT = M55_DIR / "m55.ld"
DONE = re.compile(r"^(\d+) passed, (\d+) failed$")


def m55_missing(purpose="Cortex-M55 oracle"):
    """None when the cross compiler, its newlib and QEMU are here, else a one-line reason naming the packages."""
    absent = [t for t in (M55_GCC, M55_AR, QEMU) if shutil.which(t) is None]
    if not absent:
        libc = subprocess.run([M55_GCC, *M55_CPU_FLAGS, "-print-file-name=libc_nano.a"], capture_output=True,
                              text=True).stdout.strip()
        if not os.path.isabs(libc):
            absent.append("newlib (libc_nano.a)")
    if absent:
        return f"{purpose} unavailable: {', '.join(absent)} not found ({M55_INSTALL})"
    return None


def qemu_command(elf):
    """The QEMU command line running a bare-metal ELF on mps3-an547 (Cortex-M55), stdio over semihosting; the
    program's exit status is QEMU's."""
    return [QEMU, "-M", "mps3-an547", "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]


def kit_sources(vectors_dir):
    """The C sources of one kit build: the runner, the vectors' index and the C twins."""
    index = Path(vectors_dir) / "n6_vectors.c"
    if not (KIT_DIR / "n6_testkit.c").is_file():
        raise N6Error(f"the C test kit's sources ({KIT_DIR}) are not installed with this copy of n6emu; run it from "
                      f"a source checkout installed with `pip install -e .`")
    if not index.is_file():
        raise N6Error(f"{vectors_dir}: no n6_vectors.c; give a folder written by `n6emu vectors` (this version)")
    return [KIT_DIR / "n6_testkit.c", index] + [CSRC / s for s in TWIN_SOURCES]


def _flags(vectors_dir, includes, defines):
    return ([f"-I{KIT_DIR}", f"-I{CSRC}", f"-I{Path(vectors_dir)}"] + [f"-I{i}" for i in includes]
            + [f"-D{d}" for d in defines])


def m55_linker_script(work_dir):
    """csrc/m55/m55.ld with .rodata in DDR (64 MB) instead of the FPGA SRAM (2 MB), written into work_dir."""
    text = M55_LINKER_SCRIPT.read_text()
    moved, n = re.subn(r"(\.rodata\s*:\s*\{[^}]*\}\s*>\s*)SRAM\b", r"\1DDR", text)
    if n != 1:
        raise N6Error(f"{M55_LINKER_SCRIPT}: no `.rodata : {{...}} > SRAM` block to move to DDR; update "
                      f"emu/testkit.m55_linker_script to the new linker script")
    path = Path(work_dir) / "n6_testkit_m55.ld"
    path.write_text("/* csrc/m55/m55.ld with read-only data (the golden vectors) in DDR: written by emu/testkit.py */\n"
                    + moved)
    return path


def _compile(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        detail = " | ".join(line for line in r.stderr.strip().splitlines()[:12])
        raise N6Error(f"building the test kit for {what} failed: {detail}")


def build(vectors_dir, target="host", work_dir=None, cc=None, extra_sources=(), includes=(), defines=()):
    """Compile the kit for `target` into work_dir; returns the executable (host) or ELF (m55) path.
    Your firmware functions in place of the C twins: extra_sources (their .c files), includes (folders) and
    defines, e.g. ["N6K_CONV_S8=my_conv_s8", 'N6K_USER_HEADER="my_kernels.h"'] (csrc/testkit/n6_testkit.h)."""
    if target not in TARGETS:
        raise N6Error(f"target {target!r}: choose one of {', '.join(TARGETS)}")
    work = Path(work_dir if work_dir is not None else tempfile.mkdtemp(prefix="n6-testkit-"))
    work.mkdir(parents=True, exist_ok=True)
    sources = [str(s) for s in kit_sources(vectors_dir)] + [str(s) for s in extra_sources]
    flags = _flags(vectors_dir, includes, defines)
    if target == "host":
        cc = cc or os.environ.get("CC") or HOST_CC
        if shutil.which(cc) is None:
            raise N6Error(f"no host C compiler {cc!r}; install gcc or set CC")
        exe = work / "n6_testkit"
        _compile([cc, *C_FLAGS, *flags, *sources, "-lm", "-o", str(exe)], "the host")
        return exe
    reason = m55_missing("the Cortex-M55 test kit")
    if reason:
        raise N6Error(reason)
    elf = work / "n6_testkit.elf"
    _compile([M55_GCC, *M55_CPU_FLAGS, *C_FLAGS, "-ffunction-sections", "-fdata-sections", *flags, *sources,
              str(M55_DIR / "startup.c"), *M55_LINK_FLAGS, "-u", "_printf_float", "-T", str(m55_linker_script(work)),
              "-lm", "-o", str(elf)], "the Cortex-M55")
    return elf


def run(program, target="host", timeout=600):
    """Run a built kit; returns (exit status, output lines). A run that does not end with its totals line
    ("N passed, M failed") counts as failed even if its status is 0."""
    cmd = [str(program)] if target == "host" else qemu_command(program)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           cwd=Path(program).parent)
    except subprocess.TimeoutExpired:
        raise N6Error(f"the test kit did not finish within {timeout} s on {target}; raise the timeout") from None
    lines = r.stdout.splitlines() + r.stderr.splitlines()
    code = r.returncode
    done = DONE.match(r.stdout.splitlines()[-1]) if r.stdout.strip() else None
    if code == 0 and (done is None or done.group(2) != "0"):
        code = 1
    return code, lines


def build_and_run(vectors_dir, target="host", work_dir=None, timeout=600, cc=None, extra_sources=(), includes=(),
                  defines=()):
    """Build the kit for `target` ("host": gcc; "m55": arm-none-eabi-gcc + QEMU's Cortex-M55) on the vectors in
    `vectors_dir` and run it. work_dir: where the program is built (kept); None: a temporary folder, removed.
    extra_sources, includes, defines: your firmware functions instead of the C twins (see build).
    Returns (exit status, output lines): 0 when every vector passed."""
    tmp = None
    if work_dir is None:
        tmp = work_dir = tempfile.mkdtemp(prefix="n6-testkit-")
    try:
        program = build(vectors_dir, target, work_dir, cc, extra_sources, includes, defines)
        return run(program, target, timeout)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
