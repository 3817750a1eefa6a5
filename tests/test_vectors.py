"""Golden vectors: byte-identical reruns, manifest hashes, arrays equal to the traces `replay --dump` and
`run --dump` write, headers that read back bit for bit, and the checked-in set under vectors/ unchanged."""
import filecmp
import io
import json
import os
import shutil

import numpy as np
import pytest

from emu import cheader
from emu.cli import main
from emu.config import DATA_DIR
from emu.device import Device
from emu.errors import N6Error
from emu.trace import Trace
from emu.vectors import verify, write_vectors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPS = [os.path.join(DATA_DIR, "clips", n) for n in ("yes.wav", "no.wav")]
CHECKED_IN = os.path.join(ROOT, "vectors", "bundled")


def call(argv):
    out, err = io.StringIO(), io.StringIO()
    return main(argv, out, err), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("vec") / "v"
    code, out, err = call(["vectors", "--audio", *CLIPS, "--out", str(d)])
    assert code == 0, err
    return d


def _tree(root):
    return sorted(os.path.relpath(os.path.join(dp, f), root) for dp, _, fs in os.walk(root) for f in fs)


def test_rerun_is_byte_identical_and_manifest_verifies(generated, tmp_path):
    again = tmp_path / "again"
    write_vectors(Device(), CLIPS, str(again))
    assert _tree(generated) == _tree(again)
    _, mismatch, errors = filecmp.cmpfiles(generated, again, _tree(generated), shallow=False)
    assert mismatch == [] and errors == []
    assert verify(str(generated)) == []
    manifest = json.loads((generated / "manifest.json").read_text())
    assert sorted(f["path"] for f in manifest["files"]) == sorted(p for p in _tree(generated) if p != "manifest.json")
    assert "/work" not in (generated / "manifest.json").read_text()          # no machine paths
    copy = tmp_path / "copy"
    shutil.copytree(generated, copy)
    victim = manifest["arrays"][5]["npy"]
    data = bytearray((copy / victim).read_bytes())
    data[-1] ^= 1
    (copy / victim).write_bytes(bytes(data))
    assert verify(str(copy)) == [f"{victim}: SHA-256 differs from the manifest"]


def test_arrays_equal_the_dumps(generated, tmp_path):
    """Every case array equals the trace `replay --dump` writes for that window; every layer tensor equals
    `run --dump` on the case's input buffer; headers read back (emu.cheader) equal the .npy bit for bit."""
    manifest = json.loads((generated / "manifest.json").read_text())
    code, _, err = call(["replay", CLIPS[0], "--dump", str(tmp_path / "dump")])
    assert code == 0, err
    dump = Trace.load(tmp_path / "dump" / "yes_w00000.npz")
    arrays = [a for a in manifest["arrays"] if a["case"] == "yes_w0"]
    assert {a["stage"] for a in arrays} == set(dump.names())
    headers = {}
    for a in arrays:
        v = np.load(generated / a["npy"])
        assert v.dtype == dump[a["stage"]].dtype and np.array_equal(v, dump[a["stage"]]), a["stage"]
        if a["header"] not in headers:
            headers[a["header"]] = cheader.parse_arrays((generated / a["header"]).read_text())
        h = headers[a["header"]][a["c_name"]]
        want = v.reshape(-1).view(np.uint32) if v.dtype == np.float32 else v.reshape(-1)
        assert np.array_equal(np.asarray(h).astype(want.dtype), want), a["c_name"]
    np.save(tmp_path / "in.npy", dump["input_buffer"])
    code, _, err = call(["run", os.path.join(DATA_DIR, "kws", "model_qdq.onnx"), "--input", str(tmp_path / "in.npy"),
                         "--output", str(tmp_path / "o.npy"), "--dump", str(tmp_path / "run.npz")])
    assert code == 0, err
    run = Trace.load(tmp_path / "run.npz")
    for name in run.names("network/"):
        assert np.array_equal(np.load(generated / next(a["npy"] for a in arrays if a["stage"] == name)), run[name])
    model = [a for a in manifest["arrays"] if a["case"] == "model"]
    dev = Device()
    for layer in manifest["layers"]:
        params = dev.session.prepared.params[layer["name"]]
        for k, cname in layer["arrays"].items():
            a = next(m for m in model if m["c_name"] == cname)
            assert np.array_equal(np.load(generated / a["npy"]), getattr(params, k)), cname
    assert any(layer["op"] == "conv2d" and {"filt", "bias", "mult", "shift"} <= set(layer["arrays"])
               for layer in manifest["layers"])


def test_bad_requests_are_one_line_errors(tmp_path, generated):
    code, _, err = call(["vectors", "--audio", CLIPS[0], "--out", str(generated)])
    assert code == 2 and "not an empty folder" in err and err.count("\n") == 1
    np.save(tmp_path / "short.npy", np.zeros(8000, np.int16))
    code, _, err = call(["vectors", "--audio", str(tmp_path / "short.npy"), "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()
    with pytest.raises(N6Error, match="stages"):
        write_vectors(Device(), CLIPS, str(tmp_path / "p"), stages="some")
    with pytest.raises(N6Error, match="distinct file names"):
        write_vectors(Device(), [CLIPS[0], CLIPS[0]], str(tmp_path / "q"))
    assert not (tmp_path / "p").exists() and not (tmp_path / "q").exists()


def test_stage_subsets(tmp_path):
    fe = write_vectors(Device(), CLIPS[:1], str(tmp_path / "fe"), stages="frontend")
    assert all(not a["stage"].startswith("network/") for a in fe["arrays"])
    assert not (tmp_path / "fe" / "model.h").exists()
    net = write_vectors(Device(), CLIPS[:1], str(tmp_path / "net"), stages="network")
    assert all(not a["stage"].startswith("frontend/") for a in net["arrays"])


def test_checked_in_vectors_are_current(tmp_path):
    """vectors/bundled holds what `n6emu vectors --audio emu/data/clips/yes.wav emu/data/clips/no.wav --out
    vectors/bundled` writes today except the per-case headers and .npy files (9 MB, regenerated by that command):
    the checked-in files are byte-identical to a fresh generation, and the manifest's SHA-256 pins every file of it
    (regenerate and commit when the chain changes on purpose)."""
    assert os.path.isdir(CHECKED_IN), "vectors/bundled is missing; regenerate it (see this test's doc)"
    fresh = tmp_path / "fresh"
    write_vectors(Device(), CLIPS, str(fresh))
    kept = _tree(CHECKED_IN)
    assert {"manifest.json", "model.h", "frontend.h", "n6_vectors.c"} <= set(kept)
    _, mismatch, errors = filecmp.cmpfiles(CHECKED_IN, fresh, kept, shallow=False)
    assert mismatch == [] and errors == [], f"vectors/bundled is stale in {mismatch[:5]}; regenerate it"
    assert verify(str(fresh)) == []           # every fresh file has the hash the checked-in manifest records
    manifest = json.loads((fresh / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} >= {"yes_w0.h", "no_w0.h", "npy/yes_w0/output.npy"}


def test_arena_images_are_in_the_manifest(tmp_path):
    """--arena: the arena after every layer, listed with hashes; the output tensor's bytes sit at its planned
    offset in the last image (the layout a debugger's memory dump of the board's arena is compared against)."""
    code, out, err = call(["vectors", "--audio", CLIPS[0], "--out", str(tmp_path / "a"), "--arena"])
    assert code == 0 and "arena images" in out, err
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    dev = Device()
    n = len(dev.graph.nodes)
    images = sorted(f["path"] for f in manifest["files"] if f["path"].endswith(".bin"))
    assert images == [f"arena/yes_w0_after_l{i:02d}.bin" for i in range(n)]
    assert verify(str(tmp_path / "a")) == []
    out_name = dev.graph.outputs[0]
    place = next(t for t in manifest["memory"]["tensors"] if t["name"] == out_name)
    last = np.fromfile(tmp_path / "a" / images[-1], np.int8)
    assert last.size == manifest["memory"]["peak_bytes"]
    want = np.load(tmp_path / "a" / "npy" / "yes_w0" / "output.npy").reshape(-1)
    assert np.array_equal(last[place["offset"]:place["offset"] + want.size], want)


def test_cli_testkit_runs_the_c_kit_on_the_vectors(generated, tmp_path):
    """`n6emu testkit DIR`: the firmware C test kit, built with gcc and the C twins, passes every vector."""
    code, out, err = call(["testkit", str(generated), "--work", str(tmp_path / "w")])
    lines = out.splitlines()
    assert code == 0, err + out[-2000:]
    assert lines[-1] == f"{len(lines) - 1} passed, 0 failed" and all(s.startswith("PASS ") for s in lines[:-1])
    assert any(s.startswith("PASS yes_w0 l01_conv2d") for s in lines)


def test_compare_reads_an_arena_dump_region_by_region(tmp_path):
    """A debugger's dump of the board's arena (here: the expected image with one byte changed, at an offset in the
    dump) compared tensor by tensor: exactly the tensor holding the changed byte differs, at the right position."""
    write_vectors(Device(), CLIPS[:1], str(tmp_path / "a"), arena=True)
    amap = tmp_path / "a" / "arena" / "yes_w0_map.json"
    bounds = json.loads(amap.read_text())["boundaries"]
    k = 3
    live = bounds[k]["live"][-1]
    image = np.fromfile(tmp_path / "a" / "arena" / bounds[k]["file"], np.int8).copy()
    pos = live["offset"] + 7
    image[pos] = np.int8(image[pos] ^ 0x10)
    (tmp_path / "dump.bin").write_bytes(b"\xaa" * 64 + image.tobytes())
    code, out, err = call(["compare", str(tmp_path / "dump.bin"), f"arena:{amap}", "--after-layer", str(k),
                           "--offset", "64", "--json"])
    assert code == 1, err
    r = json.loads(out)
    differing = [t for t in r["tensors"] if t["n_differ"]]
    assert [t["name"] for t in differing] == [live["name"]] and differing[0]["n_differ"] == 1
    assert differing[0]["first"]["index"] == 7
    assert differing[0]["first"]["position"] == [int(v) for v in np.unravel_index(7, live["shape"])]
    (tmp_path / "ok.bin").write_bytes(b"\xaa" * 64 + np.fromfile(tmp_path / "a" / "arena" / bounds[k]["file"],
                                                                  np.int8).tobytes())
    code, out, _ = call(["compare", str(tmp_path / "ok.bin"), f"arena:{amap}", "--after-layer", str(k), "--offset", "64"])
    assert code == 0 and "DIFF" not in out
    code, _, err = call(["compare", str(tmp_path / "ok.bin"), f"arena:{amap}", "--after-layer", "99"])
    assert code == 2 and "--after-layer 99" in err
    code, _, err = call(["compare", str(tmp_path / "ok.bin"), f"arena:{amap}", "--after-layer", str(k),
                         "--offset", "100000"])
    assert code == 2 and "dump the whole arena" in err
