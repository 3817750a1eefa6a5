"""User-facing errors of n6emu.

`N6Error` carries a one-line message that names the problem and the fix. Library code raises it;
only emu/cli.py catches it, prints the message on stderr and exits with status 2.
"""


class N6Error(Exception):
    """A user mistake or unsupported input, described in one line (problem + fix); no traceback needed."""


def printable(name, limit=80):
    """`name` (a tensor/op/layer name read from a file) safe to print in one line: control characters, terminal
    escape codes, non-printable and surrogate characters become \\xNN / \\uNNNN escapes, quotes and backslashes stay
    unambiguous, and names longer than `limit` characters are cut with '...'. Apply it to every name that comes
    from a model or data file before it goes into a message or a printed table."""
    s = "<none>" if name is None else str(name)
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() and not 0xD800 <= o <= 0xDFFF:
            out.append(ch)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    s = "".join(out)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def quoted(name, limit=80):
    """printable(name) in single quotes: how a name from a file appears in a message."""
    return f"'{printable(name, limit)}'"
