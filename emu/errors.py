"""User-facing errors of n6emu.

`N6Error` carries a one-line message that names the problem and the fix. Library code raises it;
only emu/cli.py catches it, prints the message on stderr and exits with status 2.
"""


class N6Error(Exception):
    """A user mistake or unsupported input, described in one line (problem + fix); no traceback needed."""
