import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import textured_frames
from tmics_cli.model import TMICS, WeightsError, build_model, load_model, read_metadata, save_model
from tmics_cli.model.io import config_from_metadata


def _trained_like(preset: str | None) -> TMICS:
    """A tiny model whose parameters and BN statistics are not at their initial values."""
    model = build_model(preset, "tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("preset", ["light", "heavy", None])
def test_save_then_load_gives_bit_identical_outputs(tmp_path: Path, preset: str | None) -> None:
    model = _trained_like(preset)
    frames = textured_frames(1, 5, 20, 26)
    path = save_model(model, tmp_path / "m.safetensors", metadata={"trained_on": "unit test"})
    loaded = load_model(path)
    with torch.no_grad():
        assert torch.equal(model(frames), loaded(frames))
    assert loaded.config == model.config
    assert read_metadata(path)["trained_on"] == "unit test"
    assert not list(tmp_path.glob(".*tmp*"))


def test_metadata_alone_rebuilds_the_architecture(tmp_path: Path) -> None:
    model = _trained_like("heavy")
    path = save_model(model, tmp_path / "m.safetensors")
    meta = read_metadata(path)
    assert json.loads(meta["config"])["genotype"]["alignment"] == "tgm"
    rebuilt = TMICS(config_from_metadata(meta))
    shapes = {k: v.shape for k, v in rebuilt.state_dict().items()}
    assert shapes == {k: v.shape for k, v in model.state_dict().items()}
    assert [type(m).__name__ for m in rebuilt.modules()] == [type(m).__name__ for m in model.modules()]


def test_fp16_storage_halves_the_file_and_keeps_outputs_close(tmp_path: Path) -> None:
    model = _trained_like("light")
    full = save_model(model, tmp_path / "f32.safetensors")
    half = save_model(model, tmp_path / "f16.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    frames = textured_frames(1, 5, 20, 26)
    with torch.no_grad():
        torch.testing.assert_close(load_model(half)(frames), model(frames), atol=5e-3, rtol=0)
    assert load_model(half).dna.head.weight.dtype == torch.float32


def _rewrite(path: Path, tensors: dict, meta: dict) -> None:
    save_file(tensors, str(path), metadata=meta)


def test_tampered_width_names_the_mismatched_tensors(tmp_path: Path) -> None:
    path = save_model(_trained_like("light"), tmp_path / "m.safetensors")
    meta, tensors = read_metadata(path), load_file(str(path))
    config = json.loads(meta["config"])
    config["width"] = 12
    _rewrite(path, tensors, {**meta, "config": json.dumps(config)})
    expected = r"shape mismatch.*align\.fuse\.0\.weight \(8, 20, 3, 3\) vs \(12, 20, 3, 3\)"
    with pytest.raises(WeightsError, match=expected):
        load_model(path)


def test_tampered_genotype_gives_a_clear_error(tmp_path: Path) -> None:
    path = save_model(_trained_like("light"), tmp_path / "m.safetensors")
    meta, tensors = read_metadata(path), load_file(str(path))
    config = json.loads(meta["config"])
    config["genotype"]["layers"][0] = "dense_7x7"
    _rewrite(path, tensors, {**meta, "config": json.dumps(config)})
    with pytest.raises(WeightsError, match="unknown operation"):
        load_model(path)
    config["genotype"]["layers"][0] = "dense_3x3"  # valid name, other tensors
    _rewrite(path, tensors, {**meta, "config": json.dumps(config)})
    with pytest.raises(WeightsError, match="missing tensors: .*cells.0.layers.0.conv1"):
        load_model(path)


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    path = save_model(_trained_like("heavy"), tmp_path / "m.safetensors")
    meta, tensors = read_metadata(path), load_file(str(path))
    del tensors["aas.score.0.weight"]
    _rewrite(path, tensors, meta)
    with pytest.raises(WeightsError, match=r"missing tensors: aas\.score\.0\.weight"):
        load_model(path)


def test_files_that_are_not_tmics_weights(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file")
    with pytest.raises(WeightsError, match="not a safetensors"):
        load_model(junk)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="not a tmics weights file"):
        load_model(other)
    no_config = tmp_path / "noconfig.safetensors"
    save_file({"w": torch.zeros(2)}, str(no_config), metadata={"format": "tmics-weights/1"})
    with pytest.raises(WeightsError, match="no 'config'"):
        load_model(no_config)


def test_reserved_metadata_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        save_model(build_model("light", "tiny"), tmp_path / "m.safetensors", metadata={"config": "x"})


def test_average_models_is_the_mean_and_refuses_other_networks(tmp_path: Path) -> None:
    from tmics_cli.model import average_models

    a, b = _trained_like("light"), _trained_like("light")
    paths = [save_model(m, tmp_path / f"{n}.safetensors") for n, m in (("a", a), ("b", b))]
    soup = average_models(paths)
    sa, sb, ss = a.state_dict(), b.state_dict(), soup.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa if sa[k].is_floating_point())
    for k, v in ss.items():
        if v.is_floating_point():
            assert torch.allclose(v, (sa[k] + sb[k]) / 2, atol=1e-6), k
    with torch.no_grad():  # and it runs
        assert soup(textured_frames(1, 5, 20, 26)).shape == (1, 3, 20, 26)
    other = save_model(_trained_like("heavy"), tmp_path / "c.safetensors")
    with pytest.raises(WeightsError, match="another network"):
        average_models([paths[0], other])


def test_weights_of_nan_or_integers_are_refused(tmp_path: Path) -> None:
    """A diverged run's NaN weights loaded and were scored (3.8 dB) and would derain to black frames."""
    path = save_model(_trained_like("heavy"), tmp_path / "m.safetensors")
    meta, tensors = read_metadata(path), load_file(str(path))
    _rewrite(path, {**tensors, "aas.score.0.weight": tensors["aas.score.0.weight"] * float("nan")}, meta)
    with pytest.raises(WeightsError, match=r"NaN or infinite values: aas\.score\.0\.weight"):
        load_model(path)
    _rewrite(path, {**tensors, "aas.score.0.weight": tensors["aas.score.0.weight"].to(torch.int32)}, meta)
    with pytest.raises(WeightsError, match=r"integer tensors where the network has floats.*aas\.score\.0"):
        load_model(path)
