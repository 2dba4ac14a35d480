"""tools/pack_clips.py: frame folders into near-lossless H.264 files that `tmics train --data` reads."""

import runpy
import sys
from pathlib import Path

import pytest

from tests.test_datasets import write_clip
from tmics_cli.data.datasets import load_clips

TOOL = Path(__file__).resolve().parents[1] / "tools/pack_clips.py"


def _pack(monkeypatch: pytest.MonkeyPatch, *args: str | Path) -> int:
    monkeypatch.setattr(sys, "argv", [str(TOOL), *map(str, args)])
    try:
        runpy.run_path(str(TOOL), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_packed_clips_are_read_as_clips_and_not_replaced_without_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for i, name in enumerate(["alpha", "beta"]):
        write_clip(tmp_path / "clean" / name, frames=5, h=41, w=48, seed=i)  # an odd height is cropped
    assert _pack(monkeypatch, tmp_path / "clean", tmp_path / "packed") == 0
    psnrs = [float(line.split()[-2]) for line in capsys.readouterr().out.splitlines() if "Y-PSNR" in line]
    assert len(psnrs) == 2 and min(psnrs) > 38
    clips = load_clips([tmp_path / "packed"])
    assert [c.name for c in clips] == ["alpha", "beta"]
    assert all(len(c.frames) == 5 and c.frames[0].shape == (40, 48, 3) for c in clips)
    assert _pack(monkeypatch, tmp_path / "clean", tmp_path / "packed") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _pack(monkeypatch, tmp_path / "clean", tmp_path / "packed", "--overwrite") == 0
    assert _pack(monkeypatch, tmp_path / "clean", tmp_path / "clean" / "packed") == 2
    assert "inside the input folder" in capsys.readouterr().err
