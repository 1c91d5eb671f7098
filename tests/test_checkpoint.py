"""Checkpoints are data: written with plain types only, read with ``weights_only=True``, and every
file that is not a waveflow checkpoint (a malicious pickle included) is refused with one line."""

from __future__ import annotations

import ast
import pickle
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from waveflow.cli import main
from waveflow.model import (
    FORMAT_VERSION,
    WaveFlow,
    WaveFlowConfig,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from waveflow.model.synthesis import _load_mel_file
from waveflow.paths import LJSPEECH_MINI
from waveflow.train import TrainConfig, read_metrics, train

PACKAGE = Path(__file__).resolve().parents[1] / "waveflow"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = WaveFlowConfig(n_height=8, res_channels=4, n_flows=2, n_layers=2, permutation="reverse")


class Evil:
    """A pickle whose loading writes ``marker``: what a hostile 'checkpoint' would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _tiny_checkpoint(path: Path, **kw) -> Path:
    torch.manual_seed(0)
    model = WaveFlow(TINY)
    return save_checkpoint(path, model, torch.optim.Adam(model.parameters()), step=5, **kw)


def _payload(path: Path) -> dict:
    return torch.load(path, weights_only=True)  # no allow-list: a format-2 file is plain data


def _assert_one_line(message: str, path: Path) -> None:
    assert "\n" not in message.strip() and str(path) in message, message
    assert "Traceback" not in message and "weights_only` set to `False" not in message, message


# ----------------------------------------------------------------------------------------------
# The format
def test_checkpoint_is_plain_data_and_round_trips(tmp_path):
    path = _tiny_checkpoint(tmp_path / "c.pt", extra={"note": "x", "where": tmp_path})
    payload = _payload(path)
    assert payload["format_version"] == FORMAT_VERSION == 2
    assert payload["extra"]["where"] == str(tmp_path)  # paths are stored as strings
    model, info = load_checkpoint(path)
    assert info["step"] == 5 and info["config"] == TINY
    torch.manual_seed(0)
    for (n, p), (_, q) in zip(WaveFlow(TINY).state_dict().items(), model.state_dict().items()):
        assert torch.equal(p, q), n


def test_save_refuses_what_the_safe_loader_could_not_read(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['extra'\]\['bad'\] is a Evil; expected tensors"):
        _tiny_checkpoint(tmp_path / "c.pt", extra={"bad": Evil(tmp_path / "m")})
    assert not (tmp_path / "c.pt").exists()


def test_rng_states_restore_exactly_including_cached_gaussians(tmp_path):
    random.seed(1), np.random.seed(2)
    random.gauss(0, 1), np.random.standard_normal()  # leave a cached Gaussian in both
    path = _tiny_checkpoint(tmp_path / "c.pt")
    rng = _payload(path)["rng"]
    assert rng["python"]["gauss_next"] is not None and rng["numpy"]["has_gauss"] == 1

    def draws():
        return random.gauss(0, 1), random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(3)

    expected = draws()  # what follows the saved state
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(read_checkpoint(path)["rng"])
    again = draws()
    assert expected[:4] == again[:4] and torch.equal(expected[4], again[4])


# ----------------------------------------------------------------------------------------------
# Malicious pickles run nothing
def _evil_files(tmp_path: Path, marker: Path) -> list[Path]:
    raw = tmp_path / "evil_raw.pt"
    raw.write_bytes(pickle.dumps({"config": {}, "model": Evil(marker)}, protocol=2))
    raw4 = tmp_path / "evil_raw4.pt"  # protocol 4 framing: refused before it even reaches the global
    raw4.write_bytes(pickle.dumps({"config": {}, "model": Evil(marker)}, protocol=4))
    zipped = tmp_path / "evil.pt"
    torch.save({"format_version": 2, "config": TINY.to_dict(), "model": Evil(marker)}, zipped)
    # Looks like format 1 (which gets the NumPy allow-list) but smuggles a global anyway.
    v1 = tmp_path / "evil_v1.pt"
    torch.save({"format_version": 1, "config": TINY.to_dict(), "model": {}, "rng": Evil(marker)}, v1)
    return [raw, raw4, zipped, v1]


def test_the_evil_pickle_really_is_evil(tmp_path):
    """Sanity check of the fixture: an unsafe load does write the marker."""
    for i, evil in enumerate(_evil_files(tmp_path, tmp_path / "sanity")):
        (tmp_path / "sanity").unlink(missing_ok=True)
        if i < 2:
            pickle.loads(evil.read_bytes())
        else:
            torch.load(evil, weights_only=False)  # exactly what the package must never do
        assert (tmp_path / "sanity").read_text() == "pwned"


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, recwarn):
    marker = tmp_path / "marker"
    for evil in _evil_files(tmp_path, marker):
        pattern = r"Unsupported operand" if evil.name == "evil_raw4.pt" else r"GLOBAL (builtins\.)?exec"
        with pytest.raises(ValueError, match=rf"checkpoint .* was refused by the safe loader \(.*{pattern}") as err:
            load_checkpoint(evil)
        _assert_one_line(str(err.value), evil)
        assert not marker.exists()
    assert not recwarn.list, [str(w.message) for w in recwarn.list]  # nothing else reaches stderr


def test_synthesize_cli_refuses_a_malicious_checkpoint(tmp_path, capsys):
    marker = tmp_path / "marker"
    mel = tmp_path / "x.npy"
    np.save(mel, np.zeros((80, 4), dtype=np.float32))
    for evil in _evil_files(tmp_path, marker):
        rc = main(["synthesize", "--checkpoint", str(evil), "--mel", str(mel), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("waveflow synthesize: error: checkpoint"), err
        _assert_one_line(err, evil)
        assert not marker.exists() and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------
# Foreign files: one line naming the file and what was expected
def _foreign_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "not a checkpoint")


def _edit(base: Path, path: Path, change) -> None:
    payload = _payload(base)
    change(payload)
    torch.save(payload, path)


def _wrong_shapes(payload: dict) -> None:
    payload["config"]["res_channels"] = 8


FOREIGN = {
    "foreign zip": (_foreign_zip, r"cannot be read \(.*\); expected a waveflow checkpoint"),
    "garbage bytes": (lambda p: p.write_bytes(b"\x00hello"), r"refused by the safe loader \(Unsupported operand 0\)"),
    "no config/model": (lambda p: torch.save({"weights": torch.zeros(2)}, p), r"holds \['weights'\]; expected a wave"),
    "not a dict": (lambda p: torch.save([1, 2], p), r"holds list; expected a waveflow checkpoint"),
    "model not a state dict": (
        lambda p, b: _edit(b, p, lambda d: d.update(model=[torch.zeros(1)])),
        r"'model' is not a state dict; expected a dict of parameter name -> tensor",
    ),
    "unknown config field": (
        lambda p, b: _edit(b, p, lambda d: d["config"].update(n_heads=4)),
        r"unknown field\(s\) \['n_heads'\] and lacks \[\]; expected exactly",
    ),
    "missing config field": (
        lambda p, b: _edit(b, p, lambda d: d["config"].pop("n_height")),
        r"unknown field\(s\) \[\] and lacks \['n_height'\]",
    ),
    "invalid config value": (
        lambda p, b: _edit(b, p, lambda d: d["config"].update(kernel_size=4)),
        r"'config' is invalid: .*expected an odd kernel",
    ),
    "shapes differ from config": (
        lambda p, b: _edit(b, p, _wrong_shapes),
        r"weights do not match its config: .* is \(.*\), expected \(.*\)",
    ),
    "future format": (
        lambda p, b: _edit(b, p, lambda d: d.update(format_version=3)),
        r"format_version 3; expected 1 or 2",
    ),
    "bad step": (lambda p, b: _edit(b, p, lambda d: d.update(step="7")), r"'step' is '7'; expected an integer"),
    "bad rng": (lambda p, b: _edit(b, p, lambda d: d["rng"].pop("numpy")), r"'rng' entry is malformed"),
    "numpy in format 2": (
        lambda p, b: _edit(b, p, lambda d: d["extra"].update(a=np.zeros(2, dtype=np.uint32))),
        r"holds NumPy objects but is not format 1",
    ),
    "numpy beyond the format-1 allow-list": (
        lambda p, b: _edit(b, p, lambda d: d["extra"].update(a=np.zeros(2))),
        r"refused by the safe loader \(.*numpy.dtypes.Float64DType",
    ),
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_foreign_files_get_a_one_line_error(tmp_path, capsys, case):
    make, pattern = FOREIGN[case]
    path = tmp_path / "foreign.pt"
    if make.__code__.co_argcount == 2:
        make(path, _tiny_checkpoint(tmp_path / "base.pt"))
    else:
        make(path)
    with pytest.raises(ValueError, match=pattern) as err:
        load_checkpoint(path)
    _assert_one_line(str(err.value), path)
    mel = tmp_path / "x.npy"
    np.save(mel, np.zeros((80, 4), dtype=np.float32))
    rc = main(["synthesize", "--checkpoint", str(path), "--mel", str(mel), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().err
    assert rc == 2 and out.count("\n") == 1, out
    _assert_one_line(out, path)


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*nope\.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


# ----------------------------------------------------------------------------------------------
# --mel inputs
def test_mel_inputs_load_as_data_only(tmp_path, capsys):
    good_npy, good_pt = tmp_path / "a.npy", tmp_path / "b.pt"
    np.save(good_npy, np.ones((80, 3), dtype=np.float64))
    torch.save(torch.ones(80, 5), good_pt)
    assert _load_mel_file(good_npy, 80).shape == (80, 3) and _load_mel_file(good_pt, 80).shape == (80, 5)

    marker = tmp_path / "marker"
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    evil_pt = tmp_path / "evil_mel.pt"
    torch.save(Evil(marker), evil_pt)
    strings, a_dict = tmp_path / "s.npy", tmp_path / "d.pt"
    np.save(strings, np.array(["a", "b"]))
    torch.save({"mel": torch.ones(80, 2)}, a_dict)
    cases = {
        pickled: r"cannot be read \(Object arrays cannot be loaded when allow_pickle=False\)",
        evil_pt: r"cannot be read \(Unsupported global: GLOBAL (builtins\.)?exec",
        strings: r"holds <U1; expected a \.npy or \.pt file",
        a_dict: r"holds a dict; expected",
    }
    for path, pattern in cases.items():
        with pytest.raises(ValueError, match=pattern) as err:
            _load_mel_file(path, 80)
        _assert_one_line(str(err.value), path)
    assert not marker.exists()

    ckpt = _tiny_checkpoint(tmp_path / "c.pt")
    rc = main(["synthesize", "--checkpoint", str(ckpt), "--mel", str(pickled), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"waveflow synthesize: error: --mel {pickled} cannot be read"), err
    assert err.count("\n") == 1 and not marker.exists()


# ----------------------------------------------------------------------------------------------
# Resume, and the guard that keeps every load safe
def _run(out: Path, steps: int, model: WaveFlowConfig) -> TrainConfig:
    return TrainConfig(
        model=model,
        data=str(LJSPEECH_MINI),
        out=str(out),
        steps=steps,
        batch_size=2,
        segment=2048,
        val_every=0,
        val_clips=0,
        device="cpu",
        seed=3,
    )


def test_resume_from_format_2_is_bit_exact(tmp_path):
    full = train(_run(tmp_path / "full", 4, TINY), progress=False)
    train(_run(tmp_path / "split", 2, TINY), progress=False)
    assert _payload(tmp_path / "split" / "checkpoints" / "last.pt")["format_version"] == 2
    resumed = train(_run(tmp_path / "split", 4, TINY), resume=True, progress=False)
    a = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    b = [r["loss"] for r in read_metrics(tmp_path / "split" / "metrics.jsonl")]
    assert len(a) == 4 and a == b
    ma, _ = load_checkpoint(full.last_checkpoint)
    mb, _ = load_checkpoint(resumed.last_checkpoint)
    for (n, p), (_, q) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(p, q), n


def test_a_format_1_run_resumes_and_is_rewritten_as_format_2(tmp_path):
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(FIXTURES / "checkpoint_v1_pre_layout.pt", run / "checkpoints" / "last.pt")
    config = WaveFlowConfig.from_dict(read_checkpoint(run / "checkpoints" / "last.pt")["config"])
    train(_run(run, 8, config), resume=True, progress=False)
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [8]
    payload = _payload(run / "checkpoints" / "last.pt")
    assert payload["format_version"] == 2 and payload["step"] == 8


def _calls(name: str):
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path.relative_to(PACKAGE.parent), node


def test_every_load_in_the_package_is_safe():
    loads = list(_calls("torch.load"))
    assert loads, "expected torch.load calls in the package"
    for where, call in loads:
        kw = {k.arg: k.value for k in call.keywords}
        assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, where
    for where, call in _calls("np.load"):
        assert not any(k.arg == "allow_pickle" and getattr(k.value, "value", False) for k in call.keywords), where
    for name in ("pickle.load", "pickle.loads", "torch.serialization.add_safe_globals"):
        assert not list(_calls(name)), f"{name} in {list(_calls(name))}"
