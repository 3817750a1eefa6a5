#!/usr/bin/env bash
# A new user's installs, in fresh venvs with a fresh HOME (issue 15):
#   1. `python -m build` on a clean copy of the source: the sdist carries csrc/ and setup.py, the wheel the C twins;
#   2. README command 1 (install + replay of the bundled clips), then README command 2's install part (the editable
#      install with the test extras), `n6emu --help` and a replay; `pip uninstall -y n6emu && pip install .` and a
#      replay; no Numba cache file is ever written inside the package and no folder is left behind by an uninstall;
#   3. the wheel installed into a venv whose site-packages and HOME are read-only: `n6emu replay` on a bundled clip
#      succeeds (one notice line: no kernel cache);
#   4. the sdist installed without a C compiler: the install succeeds, the Numba backend replays, `--backend c`
#      says in one line how to get the C twins.
# Usage: tests/packaging/fresh_install.sh [WORKDIR]   (default: a new temporary folder, removed on success)
# Needs: python3 with the `build` package, gcc, and the package index pip is configured with (or PyPI).
# As root, the read-only step drops CAP_DAC_OVERRIDE (setpriv) so that file modes apply.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3}
if [ $# -ge 1 ]; then WORK=$(mkdir -p "$1" && cd "$1" && pwd); CLEAN=0
else WORK=$(mktemp -d "${TMPDIR:-/tmp}/n6emu_fresh.XXXXXX"); CLEAN=1; fi
START=$SECONDS
step() { printf '\n== [%4ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# run a command, prefix every output line with the seconds since its start, keep the exit status
timed() { "$PYTHON" "$REPO/tests/packaging/timed.py" "$@"; }
trap 'chmod -R u+w "$WORK" 2>/dev/null || true' EXIT

# A fresh user: no caches, no configuration pointing anywhere (pip's global configuration still applies).
export HOME=$WORK/home
mkdir -p "$HOME"
unset XDG_CACHE_HOME NUMBA_CACHE_DIR N6EMU_CACHE_DIR PYTHONPATH VIRTUAL_ENV PIP_USER CC || true
export PIP_NO_INPUT=1

step "clean copy of the source tree in $WORK/src"
SRC=$WORK/src
rm -rf "$SRC" && mkdir -p "$SRC"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # what git tracks plus new files it does not ignore: no build products, caches or compiled twins
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$SRC"
else
    (cd "$REPO" && tar --exclude=build --exclude=dist --exclude='*.egg-info' --exclude=__pycache__ \
        --exclude='*.so' -cf - .) | tar -xf - -C "$SRC"
fi

# README command 1 and 2: the first two ```bash blocks of the README, run as written.
mapfile -t CMDS < <(awk '/^```bash$/ {f = 1; next} /^```$/ {f = 0} f' "$SRC/README.md" | head -n 2)
CMD1=${CMDS[0]:-}; CMD2=${CMDS[1]:-}
case "$CMD1" in "python3 -m pip install ."*) ;; *) fail "README command 1 is not a pip install: '$CMD1'";; esac
case "$CMD2" in "python3 -m pip install -e "*) ;; *) fail "README command 2 is not a pip install -e: '$CMD2'";; esac
CMD2_INSTALL=${CMD2%% && *}
echo "command 1: $CMD1"
echo "command 2 (install part): $CMD2_INSTALL"

step "python -m build: sdist and wheel"
DIST=$WORK/dist
(cd "$SRC" && "$PYTHON" -m build -o "$DIST" . > "$WORK/build.log" 2>&1) || { tail -30 "$WORK/build.log"; fail "python -m build"; }
rm -rf "$SRC/build" "$SRC"/*.egg-info
SDIST=$(ls "$DIST"/n6emu-*.tar.gz); WHEEL=$(ls "$DIST"/n6emu-*.whl)
"$PYTHON" - "$SDIST" "$WHEEL" <<'EOF'
import sys, tarfile, zipfile
sdist, wheel = sys.argv[1:]
names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
need = ["setup.py", "pyproject.toml", "MANIFEST.in", "LICENSE", "csrc/cffi_common.py", "csrc/build_kernels.py",
        "csrc/build_frontend_st.py", "csrc/build_frontend_q15.py", "csrc/kernels_s8.c", "csrc/kernels_s8.h",
        "csrc/frontend_st.c", "csrc/frontend_q15.c", "csrc/helium_f16.c", "csrc/helium_f32.c"]
missing = [n for n in need if n not in names]
assert not missing, f"sdist lacks {missing}"
assert not [n for n in names if n.endswith((".so", ".nbi", ".nbc", ".pyc"))], "sdist carries built files"
w = zipfile.ZipFile(wheel).namelist()
for twin in ("emu/_c_kernels", "emu/_c_frontend_st", "emu/_c_frontend_q15"):
    so = [n for n in w if n.startswith(twin + ".") and n.endswith(".so")]
    assert so, f"wheel lacks {twin}*.so"
    print("wheel:", so[0])
assert any(n.endswith("/licenses/LICENSE") or n.endswith("/LICENSE") for n in w), "wheel lacks LICENSE"
print(f"sdist: {len(names)} entries, csrc/ and setup.py present")
EOF

where_emu() { (cd / && python3 -c 'import emu, os; print(os.path.dirname(emu.__file__))'); }
no_numba_cache_in() {
    local found
    found=$(find "$1" \( -name '*.nbi' -o -name '*.nbc' \) -print -quit 2>/dev/null || true)
    [ -z "$found" ] || fail "Numba cache file inside the package: $found"
}

step "venv A: README command 1"
VA=$WORK/venv_a
"$PYTHON" -m venv "$VA"
# shellcheck disable=SC1091
source "$VA/bin/activate"
SITE_A=$(python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
(cd "$SRC" && timed bash -c "$CMD1") > "$WORK/cmd1.log" 2>&1 || { tail -30 "$WORK/cmd1.log"; fail "README command 1"; }
grep -v '^\[ *[0-9.]*s\] *\(Requirement already\|Collecting\|Downloading\|Using cached\|WARNING: Location\)' \
    "$WORK/cmd1.log" | tail -16
[ "$(where_emu)" = "$SITE_A/emu" ] || fail "emu is imported from $(where_emu), not $SITE_A/emu"
no_numba_cache_in "$SITE_A/emu"
[ -n "$(ls -A "$HOME/.cache/n6emu/numba" 2>/dev/null)" ] || fail "no Numba cache under $HOME/.cache/n6emu/numba"
grep -q "yes" "$WORK/cmd1.log" || fail "the replay printed no keyword"

step "venv A: README command 2's install part (editable, test extras)"
(cd "$SRC" && bash -c "$CMD2_INSTALL") > "$WORK/cmd2.log" 2>&1 || { tail -30 "$WORK/cmd2.log"; fail "README command 2"; }
tail -1 "$WORK/cmd2.log"
[ ! -e "$SITE_A/emu" ] || fail "the regular install left $SITE_A/emu behind: $(find "$SITE_A/emu" | head -5)"
[ "$(where_emu)" = "$SRC/emu" ] || fail "emu is imported from $(where_emu), not the editable $SRC/emu"
n6emu --help > /dev/null || fail "n6emu --help after command 2"
(cd / && python3 -c 'from emu.kernels import ctwin; assert ctwin.available(), ctwin.missing()') \
    || fail "the editable install did not build the C twins"
(cd "$SRC" && timed n6emu replay emu/data/clips/yes.wav) || fail "replay after command 2"
no_numba_cache_in "$SRC/emu"

step "venv A: pip uninstall -y n6emu && pip install ."
python3 -m pip uninstall -y n6emu > "$WORK/uninstall.log" 2>&1 || { cat "$WORK/uninstall.log"; fail "uninstall"; }
[ ! -e "$SITE_A/emu" ] || fail "uninstall left $SITE_A/emu"
(cd "$SRC" && python3 -m pip install . > "$WORK/reinstall.log" 2>&1) || { tail -30 "$WORK/reinstall.log"; fail "pip install ."; }
[ "$(where_emu)" = "$SITE_A/emu" ] || fail "emu is imported from $(where_emu), not $SITE_A/emu"
n6emu --help > /dev/null || fail "n6emu --help after reinstall"
(cd "$SRC" && timed n6emu replay emu/data/clips/no.wav) || fail "replay after uninstall + install"
no_numba_cache_in "$SITE_A/emu"
deactivate

step "venv B: the wheel, site-packages and HOME read-only"
VB=$WORK/venv_b
"$PYTHON" -m venv "$VB"
"$VB/bin/python" -m pip install "$WHEEL" > "$WORK/wheel_install.log" 2>&1 \
    || { tail -30 "$WORK/wheel_install.log"; fail "pip install $WHEEL"; }
SITE_B=$("$VB/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
RO_HOME=$WORK/ro_home
mkdir -p "$RO_HOME"
chmod -R a-w "$VB" "$RO_HOME"
RO=()
if [ "$(id -u)" = 0 ]; then
    command -v setpriv >/dev/null || fail "running as root needs setpriv to make file modes apply"
    RO=(setpriv --bounding-set=-dac_override,-dac_read_search,-fowner --)
fi
(cd "$WORK" && env HOME="$RO_HOME" "${RO[@]}" "$PYTHON" "$REPO/tests/packaging/timed.py" \
    "$VB/bin/n6emu" replay "$SITE_B/emu/data/clips/yes.wav") > "$WORK/ro.log" 2>&1 \
    || { cat "$WORK/ro.log"; fail "n6emu replay in the read-only install"; }
cat "$WORK/ro.log"
grep -q Traceback "$WORK/ro.log" && fail "traceback in the read-only run"
[ "$(grep -c 'n6emu: cannot write the kernel cache folder' "$WORK/ro.log")" = 1 ] \
    || fail "the read-only run did not print the one-line no-cache notice"
grep -q "yes" "$WORK/ro.log" || fail "the read-only replay printed no keyword"
chmod -R u+w "$VB" "$RO_HOME"

step "venv B: the sdist without a C compiler"
CC=n6emu-no-such-cc "$VB/bin/python" -m pip install -v --force-reinstall --no-deps "$SDIST" \
    > "$WORK/nocc.log" 2>&1 || { tail -30 "$WORK/nocc.log"; fail "install without a C compiler"; }
grep -m1 "n6emu: building the optional C twin" "$WORK/nocc.log" || fail "no notice about the C twins' build"
(cd / && "$VB/bin/python" -c 'from emu.kernels import ctwin; assert not ctwin.available()') \
    || fail "the C twins were built without a compiler?"
(cd "$WORK" && timed "$VB/bin/n6emu" replay "$SITE_B/emu/data/clips/yes.wav") || fail "Numba replay without C twins"
set +e
(cd "$WORK" && "$VB/bin/n6emu" replay "$SITE_B/emu/data/clips/yes.wav" --backend c) > "$WORK/backend_c.out" \
    2> "$WORK/backend_c.err"
rc=$?
set -e
cat "$WORK/backend_c.err"
[ "$rc" = 2 ] || fail "--backend c without the C twins: exit $rc, expected 2"
[ "$(wc -l < "$WORK/backend_c.err")" = 1 ] || fail "--backend c without the C twins: not one line"
grep -q "apt-get install gcc" "$WORK/backend_c.err" || fail "--backend c: no advice to install a compiler"
grep -q "pip install -e" "$WORK/backend_c.err" && fail "--backend c: source-checkout advice for an installed copy"

step "all passed in $((SECONDS - START)) s"
if [ "$CLEAN" = 1 ]; then rm -rf "$WORK"; fi
