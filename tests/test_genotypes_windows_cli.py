import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tmics_cli import __version__, derain_clip
from tmics_cli.model import (
    GENOTYPES,
    OPERATION_NAMES,
    Genotype,
    GenotypeError,
    build_model,
    genotype_from_architecture,
    get_genotype,
)
from tmics_cli.video.windows import reflect_index, window_indices


def test_paper_genotypes() -> None:
    assert GENOTYPES["paper-light"].layers == (
        "residual_3x3",
        "spatial_attention",
        "dilated_3x3",
        "channel_attention",
    )
    assert GENOTYPES["paper-light"].alignment == "ofm"
    assert GENOTYPES["paper-heavy"].layers == (
        "residual_5x5",
        "spatial_attention",
        "channel_attention",
        "residual_3x3",
    )
    assert GENOTYPES["paper-heavy"].alignment == "tgm"


def test_genotype_json_round_trip_and_file(tmp_path: Path) -> None:
    g = Genotype(("dense_5x5",) * 4, "tgm", {"data": "clips", "settings": {"epochs": 3}})
    again = Genotype.from_json(g.to_json())
    assert again == g and again.search == g.search
    path = tmp_path / "g.json"
    path.write_text(g.to_json())
    assert get_genotype(path) == g and get_genotype("heavy") == GENOTYPES["paper-heavy"]
    with pytest.raises(GenotypeError, match="no genotype named .* and no such file"):
        get_genotype(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"format": "tmics-genotype/1", "layers": ["residual_3x3"], "alignment": "raft"}, "alignment"),
        ({"format": "tmics-genotype/1", "layers": ["conv"], "alignment": "ofm"}, "unknown operation"),
        ({"format": "tmics-genotype/1", "layers": "residual_3x3", "alignment": "ofm"}, "list of operation"),
        ({"layers": ["residual_3x3"], "alignment": "ofm"}, "format"),
        ({"format": "tmics-genotype/1", "layers": [], "alignment": "ofm"}, "at least one layer"),
    ],
)
def test_invalid_genotypes_are_refused(payload: dict, message: str) -> None:
    with pytest.raises(GenotypeError, match=message):
        Genotype.from_json(json.dumps(payload))


def test_genotype_from_searched_weights_takes_the_argmax() -> None:
    alpha = torch.zeros(4, 8)
    picks = [7, 0, 4, 2]
    for layer, op in enumerate(picks):
        alpha[layer, op] = 2.0
    g = genotype_from_architecture(alpha, torch.tensor([0.1, 0.9]), {"data": "x"})
    assert g.layers == tuple(OPERATION_NAMES[i] for i in picks)
    assert g.alignment == "tgm"
    assert g.search["beta"]["tgm"] > 0.5 and g.search["data"] == "x"
    assert abs(sum(g.search["alpha"][0]) - 1) < 1e-5
    with pytest.raises(GenotypeError):
        genotype_from_architecture(torch.zeros(4, 7), torch.zeros(2))


def test_windows_reflect_at_the_ends() -> None:
    assert window_indices(0, 10) == [2, 1, 0, 1, 2]
    assert window_indices(1, 10) == [1, 0, 1, 2, 3]
    assert window_indices(5, 10) == [3, 4, 5, 6, 7]
    assert window_indices(9, 10) == [7, 8, 9, 8, 7]
    assert window_indices(0, 2) == [0, 1, 0, 1, 0]
    assert window_indices(0, 1) == [0, 0, 0, 0, 0]
    assert all(0 <= reflect_index(i, 3) < 3 for i in range(-9, 12))
    with pytest.raises(IndexError):
        window_indices(10, 10)


def test_derain_frames_gives_one_frame_per_input_in_order() -> None:
    model = build_model("heavy", "tiny").eval()
    frames = torch.rand(7, 3, 18, 22)
    out = derain_clip(model, frames, batch=3)
    assert out.shape == frames.shape and out.min() >= 0 and out.max() <= 1
    with torch.no_grad():
        for t in (0, 4, 6):
            windows = frames[window_indices(t, 7)].unsqueeze(0)
            torch.testing.assert_close(out[t], model(windows)[0].clamp(0, 1))


def test_cli_version_and_help() -> None:
    run = subprocess.run([sys.executable, "-m", "tmics_cli", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == f"tmics {__version__}"
    run = subprocess.run([sys.executable, "-m", "tmics_cli", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "Remove rain from videos" in run.stdout


def test_public_api_loads_registered_weights_by_name_and_keeps_the_old_names() -> None:
    import tmics_cli

    model = tmics_cli.load_model("light")
    assert isinstance(model, tmics_cli.TMICS)
    with pytest.warns(DeprecationWarning, match="iter_derained"):
        assert tmics_cli.derained_frames is tmics_cli.iter_derained
    with pytest.warns(DeprecationWarning, match="derain_clip"):
        assert tmics_cli.derain_frames is tmics_cli.derain_clip
    with pytest.raises(FileNotFoundError):
        tmics_cli.load_model("no-such-weights")


def test_named_networks_say_which_network_they_are() -> None:
    shipped = Path(__file__).resolve().parent.parent / "weights" / "heavy-ofm.genotype.json"
    assert get_genotype("heavy-ofm") == get_genotype(str(shipped))  # shipped as tmics-heavy: OFM, not TGM
    assert get_genotype("paper-heavy").alignment == "tgm"
    assert get_genotype("heavy") == get_genotype("paper-heavy")
    assert get_genotype("light") == get_genotype("paper-light") == GENOTYPES["paper-light"]


def test_the_public_api_shows_in_dir_before_its_first_use() -> None:
    import subprocess
    import sys

    code = "import tmics_cli; print(' '.join(dir(tmics_cli)))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert {"derain_video", "load_model", "Derainer", "derain_clip"} <= set(shown.split())
