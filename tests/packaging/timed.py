"""Run a command, echo its output (stdout and stderr merged) with every line prefixed by the seconds since the
start, then `first output after N s, done in M s`; exit with the command's status. Used by fresh_install.sh to
measure a first run's time to first output."""
import os
import re
import subprocess
import sys
import time


def main(argv):
    t0 = time.monotonic()
    first = None
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pending = ""
    while True:
        chunk = os.read(p.stdout.fileno(), 65536)   # not readline: a progress bar redraws with \r, no \n
        if not chunk:
            break
        t = time.monotonic() - t0
        first = t if first is None else first
        *parts, pending = re.split(r"[\r\n]", pending + chunk.decode(errors="replace"))
        for part in parts:
            if part.strip():
                print(f"[{t:6.1f}s] {part}", flush=True)
    if pending.strip():
        print(f"[{time.monotonic() - t0:6.1f}s] {pending}", flush=True)
    rc = p.wait()
    done = time.monotonic() - t0
    print(f"[{done:6.1f}s] first output after {first if first is not None else float('nan'):.1f} s, "
          f"done in {done:.1f} s, exit {rc}: {' '.join(argv)}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
