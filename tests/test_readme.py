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


def test_library_cites_no_document_the_user_does_not_have():
    """Docstrings, comments and the bundled TOML state facts; they do not point to DESIGN.md (not shipped)."""
    found = []
    for root, _, names in os.walk(os.path.join(ROOT, "emu")):
        for name in names:
            if name.endswith((".py", ".toml", ".md", ".txt", ".json")):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    if "DESIGN" in f.read():
                        found.append(os.path.relpath(path, ROOT))
    assert found == []


def test_readme_states_the_one_time_compile_and_loads_pcm_with_audio_load():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert "first run compiles the kernels" in text.lower() and "compiling kernels (first run only" in text
    api = text[text.index("## Python API"):]
    assert 'audio.load("emu/data/clips/yes.wav")' in api and "unknown (below threshold)" in text
