"""The README's Python API example runs as written (from the repository root)."""
import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_example_runs(monkeypatch, capsys, tmp_path):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(ROOT)
    code = code.replace("/tmp/w0.npz", str(tmp_path / "w0.npz"))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    printed = capsys.readouterr().out
    assert "frontend/features" in printed and "'onnxruntime'" in printed
    from emu.trace import Trace
    back = Trace.load(tmp_path / "w0.npz")
    assert np.array_equal(back["output"], scope["t"]["output"])
    assert scope["rec"]["label"] == "yes" or scope["t"].decision["label"] == "yes"
