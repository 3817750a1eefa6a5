"""Device description TOML: bundled default, round trip, unknown keys and bad values named in one line."""
import pytest

from emu import config
from emu.errors import N6Error


def test_bundled_default_is_valid_and_documented():
    cfg = config.load_config()
    assert cfg.frontend.profile == "st-f16"
    assert (cfg.frontend.n_mels, cfg.frontend.n_frames, cfg.frontend.hop_length) == (40, 49, 320)
    assert cfg.model_path().endswith("model_qdq.onnx")
    assert cfg.input.layout == "mel-major" and cfg.input.boundary == "int8"
    doc = config.__doc__
    for section, cls in (("model", config.ModelSection), ("input", config.InputSection), ("app", config.AppSection)):
        for f in cls.__dataclass_fields__:
            assert f in doc, f"[{section}].{f} undocumented"


def test_round_trip(tmp_path):
    cfg = config.load_config().replace("input", layout="frame-major").replace("app", classes=("a", "b"))
    p = tmp_path / "dev.toml"
    p.write_text(config.to_toml(cfg))
    back = config.load_config(p)
    assert back.to_dict() == cfg.to_dict()


def test_relative_model_path(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "dev.toml"
    p.write_text('[model]\npath = "../m.tflite"\n')
    assert config.load_config(p).model_path() == str(tmp_path / "m.tflite")


@pytest.mark.parametrize("text, needle", [
    ('[model]\nprofil = "cmsis-nn"\n', r"unknown key \[model\]\.profil"),
    ('[modle]\n', r"unknown key \[top level\]\.modle"),
    ('[frontend]\nn_mel = 40\n', "n_mel"),
    ('[model]\nprofile = "npu"\n', r"\[model\]\.profile"),
    ('[input]\nlayout = "nchw"\n', r"\[input\]\.layout"),
    ('[app]\nthreshold = 1.5\n', r"\[app\]\.threshold"),
    ('[app]\nsilence_gate = "yes"\n', r"\[app\]\.silence_gate"),
    ('[frontend]\nn_fft = 1000\n', "power of two"),
    ('[frontend]\nwin_length = 2048\n', "win_length"),
    ('[frontend]\nfmax = 9000.0\n', "fmax"),
    ('this is = = not toml', "invalid TOML"),
])
def test_errors_are_one_line_and_name_the_key(tmp_path, text, needle):
    p = tmp_path / "dev.toml"
    p.write_text(text)
    with pytest.raises(N6Error, match=needle) as err:
        config.load_config(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(N6Error, match="no such config file"):
        config.load_config(tmp_path / "nope.toml")
