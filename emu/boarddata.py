"""Board data: what users capture from an STM32N6 board, read into numpy arrays (for `n6emu compare`).

    d = read_board_data("out.bin", dtype="int8", shape=(1, 12))   # a debugger's memory dump
    d = read_board_data("network_val_io.npz")                     # stedgeai validate: every array by name
    d = read_board_data("uart.txt", dtype="int8")                 # numbers printed by the board
    d.arrays                  # name -> array, in file order ("" names the one array of an unnamed capture)
    d.single()                # the one array (N6Error when the file holds several: pick one with name=)
    d.format, d.trace         # how it was read; the emu.trace.Trace of a trace .npz (else None)

`read_board_data(path, dtype=None, shape=None, offset=0, name=None)` chooses the reader by extension, then by
content (a file of another extension that is plain text is read as a text list, anything else as a raw dump):

  .npy   one array (numpy.save; no pickled objects).
  .npz   several arrays, all of them by name. A trace .npz (Trace.save, `n6emu run/replay --dump`: it holds a
         __meta__ record) gives its stages by stage name and its Trace as `.trace`.
  .csv   a validation file as ST Edge AI's `stedgeai validate --save-csv` writes it: one sample per line,
         values separated by commas, flattened; lines starting with '#' are comments (a `dtype=<name>` in
         them is used when no dtype is given), a first line of names only is a header and skipped.
         -> [n_samples, values per sample]; `shape` reshapes each sample: [n_samples, *shape].
  .bin .raw .dump .mem .dmp .img, and any file that is not plain text: a raw memory dump, as a debugger writes it
         (gdb: `dump binary memory FILE START END`): little-endian values of `dtype` (required), `shape`
         (default: every whole value after `offset`), starting `offset` bytes into the file. The file must hold
         at least offset + size bytes; a shorter one is an error naming both sizes.
  .txt .log and other text: a list of numbers as printed by a board: `-63 -25 -25 ...`, `[-63, -25, ...]`,
         over several lines, with optional commas, semicolons and brackets -> one flat array (then `shape`).

dtype: a numpy name (int8, uint8, int16, uint16, int32, uint32, float16, float32, float64) or a CMSIS-style
alias (s8/q7, u8, s16/q15, u16, s32/q31, u32, f16, f32, f64). Given for .npy/.npz/.csv/text, every value is
checked to fit it exactly: an int8 capture holding 200 is an error naming the value and where it is. Without a
dtype, text and CSV values are int64 when every value is an integer, else float64.
`name`: in a file of several arrays, the one to keep; for a single-array file, the name to give it.

stedgeai validation files (what could and could not be confirmed). ST's pages for `stedgeai validate`
(command_line_interface.html, evaluation_metrics.html) are stored only as their openings in the reference
search used while writing this module, so the facts below come from stedgeai/X-CUBE-AI console logs and user
scripts in public repositories, not from ST's own text:
  - confirmed (logs): `validate` saves `<name>_val_io.npz` with arrays `m_inputs_<k>`, `m_outputs_<k>`
    (the original model run on the host: ST's reference) and `c_inputs_<k>`, `c_outputs_<k>` (the generated
    C model: on the board with `--mode target`), k = 1, 2, ... per model input/output, first axis = samples
    (e.g. c_outputs_1 (10, 1, 1, 10) float32 and m_outputs_1 (10, 10) float64 for 10 samples);
  - confirmed (logs): `--save-csv` adds `<name>_val_m_inputs.csv`, `_val_c_inputs.csv`, `_val_m_outputs.csv`,
    `_val_c_outputs.csv` (older X-CUBE-AI) or the same with a `_<k>` suffix (stedgeai); newer versions also
    write `<name>_val_c_outputs_<k>.npy`;
  - seen in user scripts, not in ST's text: the CSV holds one flattened sample per line, comma-separated,
    with `#` comment lines such as `# dtype=float32`; `--valinput`/`--valoutput` take .npy, .npz or .csv;
  - not confirmed: the exact header/comment lines ST writes, the CSV layout of multi-input models, and
    whether the C model's integer buffers are saved as int8 or already dequantized (read what the file holds).
Files and npz keys named like this keep their role as the array name (`c_outputs_1`, `m_inputs_1`, ...),
which emu.compare maps to the emulator's `input_buffer` / `output`.
"""
import os
import re
from dataclasses import dataclass, field

import numpy as np

from emu.errors import N6Error

DTYPES = {
    "int8": np.int8, "s8": np.int8, "q7": np.int8,
    "uint8": np.uint8, "u8": np.uint8,
    "int16": np.int16, "s16": np.int16, "q15": np.int16,
    "uint16": np.uint16, "u16": np.uint16,
    "int32": np.int32, "s32": np.int32, "q31": np.int32,
    "uint32": np.uint32, "u32": np.uint32,
    "int64": np.int64, "uint64": np.uint64,
    "float16": np.float16, "f16": np.float16,
    "float32": np.float32, "f32": np.float32,
    "float64": np.float64, "f64": np.float64,
}
RAW_EXTENSIONS = (".bin", ".raw", ".dump", ".mem", ".dmp", ".img")
TEXT_EXTENSIONS = (".txt", ".log", ".out")
_ROLE_KEY = re.compile(r"^([mc])_(inputs|outputs)_(\d+)$")
_ROLE_STEM = re.compile(r"(?:^|_)val_([mc])_(inputs|outputs)(?:_(\d+))?$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf|nan|infinity)$", re.IGNORECASE)
_INTEGER = re.compile(r"^[+-]?\d+$")
_SEPARATORS = re.compile(r"[\s,;\[\]\(\)\{\}]+")


@dataclass
class BoardData:
    """Arrays read from one capture file (see module doc)."""
    path: str
    format: str                      # npy | npz | trace | stedgeai-csv | raw | text
    arrays: dict = field(default_factory=dict)
    trace: object = None             # emu.trace.Trace for format "trace"

    def single(self):
        """The one array of the file (N6Error naming the arrays when there are several)."""
        if len(self.arrays) != 1:
            raise N6Error(f"{self.path}: holds {len(self.arrays)} arrays ({', '.join(self.arrays)}); pick one "
                          f"with name=")
        return next(iter(self.arrays.values()))


def parse_dtype(dtype):
    """A numpy dtype from a name of DTYPES (or a numpy dtype); N6Error for anything else."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        key = dtype.strip().lower()
        if key not in DTYPES:
            raise N6Error(f"unknown dtype {dtype!r}; give one of int8, uint8, int16, uint16, int32, uint32, "
                          f"float16, float32, float64")
        return np.dtype(DTYPES[key])
    d = np.dtype(dtype)
    if d.kind not in "iuf":
        raise N6Error(f"dtype {d} is not a number type; give an integer or float type such as int8 or float32")
    return d


def parse_shape(shape):
    """A shape tuple from a tuple/list or text such as "1x12", "1,12", "[1, 12]" or "12"; N6Error otherwise."""
    if shape is None:
        return None
    if isinstance(shape, str):
        parts = [p for p in re.split(r"[x×,\s\[\]\(\)]+", shape.strip()) if p]
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            dims = None
        if not dims or any(d <= 0 for d in dims):
            raise N6Error(f"shape {shape!r}: give positive dimensions such as 1x12 or 1,40,49")
        return dims
    dims = tuple(int(d) for d in np.atleast_1d(shape))
    if any(d <= 0 for d in dims):
        raise N6Error(f"shape {list(dims)}: every dimension must be positive")
    return dims


def stedgeai_role(name):
    """(side 'm' or 'c', 'inputs' or 'outputs', index k) of an stedgeai validation array or file name, else None."""
    base = os.path.basename(str(name))
    stem = os.path.splitext(base)[0] if base.lower().endswith((".csv", ".npy")) else base
    m = _ROLE_KEY.match(stem) or _ROLE_STEM.search(stem)
    if m is None:
        return None
    return m.group(1), m.group(2), int(m.group(3) or 1)


def read_board_data(path, dtype=None, shape=None, offset=0, name=None):
    """Read one capture file into a BoardData (see the module doc for formats and checks)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise N6Error(f"{path}: no such file")
    dt = parse_dtype(dtype)
    shape = parse_shape(shape)
    offset = 0 if offset is None else int(offset)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        kind = "npy"
    elif ext == ".npz":
        kind = "npz"
    elif ext == ".csv":
        kind = "stedgeai-csv"
    elif ext in RAW_EXTENSIONS:
        kind = "raw"
    elif ext in TEXT_EXTENSIONS or _looks_like_text(path):
        kind = "text"
    else:
        kind = "raw"
    if offset and kind != "raw":
        raise N6Error(f"{path}: a byte offset applies to raw binary dumps (.bin/.raw), not to a {kind} file; "
                      f"drop the offset")
    if offset < 0:
        raise N6Error(f"{path}: offset {offset} is negative; give the byte offset of the first value (>= 0)")
    role = stedgeai_role(path)
    default_name = "" if role is None else f"{role[0]}_{role[1]}_{role[2]}"

    if kind == "raw":
        data = BoardData(path, "raw", {default_name: _read_raw(path, dt, shape, offset)})
    elif kind == "npy":
        data = BoardData(path, "npy", {default_name: _read_npy(path)})
    elif kind == "npz":
        data = _read_npz(path)
    elif kind == "stedgeai-csv":
        arr, dt_comment = _read_csv(path, dt)
        dt = dt if dt is not None else dt_comment
        data = BoardData(path, "stedgeai-csv", {default_name: arr})
    else:
        data = BoardData(path, "text", {default_name: _read_text(path, dt)})

    if name is not None:
        data = _select(data, name)
    if dt is not None and kind != "raw":
        data.arrays = {k: _as_dtype(v, dt, f"{path}" + (f" [{k}]" if k else "")) for k, v in data.arrays.items()}
    if shape is not None and kind != "raw":
        if len(data.arrays) != 1:
            raise N6Error(f"{path}: a shape applies to one array; the file holds {len(data.arrays)} "
                          f"({', '.join(data.arrays)}): pick one with name=")
        (k, v), = data.arrays.items()
        data.arrays = {k: _reshape(v, shape, path, per_row=kind == "stedgeai-csv")}
    return data


# ---- readers --------------------------------------------------------------------------------------------

def _looks_like_text(path, n=65536):
    with open(path, "rb") as f:
        head = f.read(n)
    if not head or b"\0" in head:
        return False
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def _select(data, name):
    if name in data.arrays:
        data.arrays = {name: data.arrays[name]}
        return data
    if len(data.arrays) == 1 and data.format in ("npy", "raw", "text", "stedgeai-csv"):
        data.arrays = {name: next(iter(data.arrays.values()))}
        return data
    raise N6Error(f"{data.path}: no array named {name!r}; it holds {', '.join(data.arrays) or 'nothing'}")


def _read_raw(path, dt, shape, offset):
    if dt is None:
        raise N6Error(f"{path}: a raw binary dump has no header; give the dtype of its values (--dtype int8; "
                      f"dtype= in Python) and their shape")
    dt = dt.newbyteorder("<")
    size = os.path.getsize(path)
    if shape is not None:
        count = int(np.prod(shape, dtype=np.int64))
        need = offset + count * dt.itemsize
        if size < need:
            raise N6Error(f"{path}: the file holds {size} bytes but {count} {dt.name} values of shape "
                          f"{list(shape)} at offset {offset} need {need} bytes; check the dump's address range, "
                          f"shape and dtype")
    else:
        if offset > size:
            raise N6Error(f"{path}: offset {offset} is past the end of the file ({size} bytes)")
        rest = size - offset
        if rest == 0:
            raise N6Error(f"{path}: no bytes after offset {offset} (the file holds {size}); nothing to read")
        if rest % dt.itemsize:
            raise N6Error(f"{path}: the {rest} bytes after offset {offset} are not a whole number of {dt.name} "
                          f"values ({dt.itemsize} bytes each); give the shape, or check the dtype")
        count = rest // dt.itemsize
    with open(path, "rb") as f:
        f.seek(offset)
        raw = f.read(count * dt.itemsize)
    arr = np.frombuffer(raw, dtype=dt, count=count).astype(dt.newbyteorder("="))
    return arr.reshape(shape) if shape is not None else arr


def _read_npy(path):
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError... for corrupt or pickled files
        raise N6Error(f"{path}: not a readable .npy file ({exc.__class__.__name__}); save it with numpy.save "
                      f"(numbers only, no pickled objects)") from None


def _read_npz(path):
    from emu.trace import META_KEY, Trace
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            arrays = {k: z[k] for k in keys if k != META_KEY}
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for corrupt archives
        raise N6Error(f"{path}: not a readable .npz file ({exc.__class__.__name__}); save it with "
                      f"numpy.savez") from None
    if META_KEY in keys:
        t = Trace.load(path)
        return BoardData(path, "trace", {n: t[n] for n in t}, trace=t)
    if not arrays:
        raise N6Error(f"{path}: the .npz holds no arrays")
    for k, v in arrays.items():
        if v.dtype.kind not in "biuf":
            raise N6Error(f"{path}: array {k!r} holds {v.dtype} values, not numbers; save numeric arrays only")
    return BoardData(path, "npz", arrays)


def _number(token, where):
    if not _NUMBER.match(token):
        raise N6Error(f"{where}: {token!r} is not a number; the file must hold numbers separated by spaces or "
                      f"commas (optionally in [brackets])")
    return int(token) if _INTEGER.match(token) else float(token)


def _values_array(values, where):
    if all(isinstance(v, int) for v in values):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            raise N6Error(f"{where}: an integer does not fit 64 bits") from None
    return np.array(values, dtype=np.float64)


def _read_text(path, dt):
    with open(path, encoding="ascii", errors="replace") as f:
        lines = f.read().splitlines()
    values, places = [], []
    for i, line in enumerate(lines, 1):
        for token in _SEPARATORS.split(line):
            if token:
                values.append(_number(token, f"{path} line {i}"))
                places.append(i)
    if not values:
        raise N6Error(f"{path}: no numbers in the file; expected a list such as `-63 -25 -25` or `[-63, -25]`")
    arr = _values_array(values, path)
    if dt is not None:
        _check_fits(arr, dt, lambda k: f"{path} line {places[k]} (value #{k + 1})")
    return arr


def _read_csv(path, dt):
    with open(path, encoding="ascii", errors="replace") as f:
        lines = f.read().splitlines()
    rows, dt_comment, width, first = [], None, None, True
    row_lines = []
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            m = re.search(r"dtype\s*[=:]\s*([A-Za-z0-9]+)", s)
            if m and m.group(1).lower() in DTYPES:
                dt_comment = np.dtype(DTYPES[m.group(1).lower()])
            continue
        fields = [x.strip() for x in s.split(",")]
        if fields and fields[-1] == "":
            fields = fields[:-1]
        if first and fields and not any(_NUMBER.match(x) for x in fields):
            first = False          # a header row of names
            continue
        first = False
        row = [_number(x, f"{path} line {i}") for x in fields]
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise N6Error(f"{path} line {i}: {len(row)} values, but the first sample has {width}; every line must "
                          f"hold one whole flattened sample")
        rows.append(row)
        row_lines.append(i)
    if not rows:
        raise N6Error(f"{path}: no samples in the CSV (only comments or blank lines)")
    flat = _values_array([v for r in rows for v in r], path)
    arr = flat.reshape(len(rows), width)
    use = dt if dt is not None else dt_comment
    if use is not None:
        _check_fits(arr.reshape(-1), use, lambda k: f"{path} line {row_lines[k // width]} (value #{k % width + 1})")
    return arr, dt_comment


# ---- checks -------------------------------------------------------------------------------------------

def _check_fits(arr, dt, where):
    """N6Error naming the first value of `arr` (flat) that `dt` cannot hold exactly; where(k) names position k."""
    flat = np.asarray(arr).reshape(-1)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if flat.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(flat) | (flat != np.round(flat)))
            if bad.size:
                k = int(bad[0])
                raise N6Error(f"{where(k)}: {flat[k].item()} is not an integer, so it is not an {dt.name} value; "
                              f"check the dtype")
        out = np.flatnonzero((flat < info.min) | (flat > info.max))
        if out.size:
            k = int(out[0])
            v = flat[k].item()
            v = int(v) if float(v).is_integer() else v
            raise N6Error(f"{where(k)}: {v} is outside {dt.name} [{info.min}, {info.max}]; check the dtype "
                          f"(or the capture)")
    elif dt.kind == "f" and flat.dtype.kind in "iuf":
        with np.errstate(over="ignore", invalid="ignore"):
            cast = flat.astype(dt)
        bad = np.flatnonzero(np.isfinite(flat.astype(np.float64)) & ~np.isfinite(cast))
        if bad.size:
            k = int(bad[0])
            raise N6Error(f"{where(k)}: {flat[k].item()} is outside the {dt.name} range; check the dtype")


def _as_dtype(arr, dt, where):
    arr = np.asarray(arr)
    if arr.dtype == dt:
        return arr
    if arr.dtype.kind not in "biuf":
        raise N6Error(f"{where}: holds {arr.dtype} values, not numbers")
    _check_fits(arr, dt, lambda k: f"{where} (flat index {k})")
    return arr.astype(dt)


def _reshape(arr, shape, path, per_row=False):
    count = int(np.prod(shape, dtype=np.int64))
    if arr.size == count:
        return arr.reshape(shape)
    if per_row and arr.ndim == 2 and arr.shape[1] == count:
        return arr.reshape((arr.shape[0],) + tuple(shape))
    what = f"{arr.shape[0]} samples of {arr.shape[1]}" if per_row and arr.ndim == 2 else f"{arr.size} values"
    raise N6Error(f"{path}: holds {what}, which do not fill shape {list(shape)} ({count} values); check the shape")
