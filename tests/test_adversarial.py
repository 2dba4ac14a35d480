"""Bad and odd inputs across the five commands, as a careless or unlucky user would give them.

Every case runs the CLI in a fresh copy of one workspace (a clip, a frames folder, a paired set, clean
clips, weights, the user's own files) and asserts: the exit status, that the output is one `error:` line
naming the problem, that no file of the workspace changed and that nothing was left behind.
"""

import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.videos import make_video, moving_texture
from tmics_cli.cli import app
from tmics_cli.model import build_model, save_model


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    words: tuple[str, ...]  # each must appear in the error line (case-insensitive)
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLOSED = _closed_port()
D = ("derain",)
W = ("--weights", "tiny.safetensors", "--device", "cpu")
T = ("train", "--size", "tiny", "--steps", "1", "--fusion-steps", "0", "--workers", "0", "--holdout", "beta")
S = ("search", "--epochs", "1", "--warmup", "0", "--groups", "1", "--val-groups", "1")
B = ("benchmark",)
F = ("fetch-weights",)

CASES = [
    # --- derain: inputs ---
    Case("missing input", (*D, "nope.mp4", "-o", "out.mp4", *W), ("nope.mp4", "does not exist")),
    Case("zero-byte input", (*D, "empty.mp4", "-o", "out.mp4", *W), ("empty.mp4",)),
    Case("random bytes", (*D, "garbage.mp4", "-o", "out.mp4", *W), ("garbage.mp4",)),
    Case("text file as video", (*D, "notes.txt", "-o", "out.mp4", *W), ("notes.txt",)),
    Case("audio-only file", (*D, "audio.m4a", "-o", "out.mp4", *W), ("no video stream",)),
    Case("folder without frames", (*D, "empty-folder", "-o", "out.mp4", *W), ("no videos or frames",)),
    Case("neither input nor --sample", (*D, "-o", "out.mp4", *W), ("--sample",)),
    Case("input and --sample", (*D, "clip.mp4", "--sample", "-o", "out.mp4", *W), ("--sample",)),
    Case("two inputs into one file", (*D, "clip.mp4", "frames", "-o", "out.mp4", *W), ("several inputs",)),
    Case("output to stdout", (*D, "clip.mp4", "-o", "-", *W), ("not standard output",)),
    Case("a pattern matching nothing", (*D, "nothing*.mp4", *W), ("matches no",)),
    # --- derain: outputs ---
    Case("output is the input", (*D, "clip.mp4", "-o", "clip.mp4", "--overwrite", *W), ("is the input",)),
    Case("output via ./", (*D, "clip.mp4", "-o", "./sub/../clip.mp4", "--overwrite", *W), ("is the input",)),
    Case("output is a symlink", (*D, "clip.mp4", "-o", "link.mp4", "--overwrite", *W), ("is the input",)),
    Case("output is a hard link", (*D, "clip.mp4", "-o", "hard.mp4", "--overwrite", *W), ("is the input",)),
    Case("output exists", (*D, "clip.mp4", "-o", "existing.mp4", *W), ("exists", "--overwrite")),
    Case(
        "log folder missing", (*D, "clip.mp4", "-o", "o.mp4", *W, "--log", "no/x.log"), ("cannot open --log",)
    ),
    Case(
        "json is a folder", (*D, "clip.mp4", "-o", "o.mp4", *W, "--json", "mine"), ("--json", "is a folder")
    ),
    # an existing folder (not a tmics frames output) takes the output inside it, under the input's name
    Case("into the input's folder", (*D, "x/in.mp4", "-o", "x", "--overwrite", *W), ("is the input",)),
    Case("-o . beside the input", (*D, "clip.mp4", "-o", ".", "--overwrite", *W), ("is the input",)),
    Case("-o x/ beside the input", (*D, "x/in.mp4", "-o", "x/", *W), ("is the input",)),
    Case("output in frames input", (*D, "frames", "-o", "frames/out.mp4", *W), ("inside the input",)),
    Case("unknown suffix", (*D, "clip.mp4", "-o", "out.xyz", *W), ("unknown output type",)),
    Case("weights suffix", (*D, "clip.mp4", "-o", "out.safetensors", *W), ("unknown output type",)),
    Case("missing out folder", (*D, "clip.mp4", "-o", "no/such/out.mp4", *W), ("does not exist",)),
    Case("file as out folder", (*D, "clip.mp4", "-o", "notes.txt/out.mp4", *W), ("does not exist",)),
    Case("file where folder", (*D, "clip.mp4", "-o", "notes", "--overwrite", *W), ("exists and is a file",)),
    # --- derain: options ---
    Case(
        "weights missing",
        (*D, "clip.mp4", "-o", "out.mp4", "--weights", "no.safetensors"),
        ("no.safetensors",),
    ),
    Case("weights text", (*D, "clip.mp4", "-o", "out.mp4", "--weights", "notes.txt"), ("notes.txt",)),
    Case("weights pickle", (*D, "clip.mp4", "-o", "out.mp4", "--weights", "pickle.pt"), ("pickle.pt",)),
    Case("weights unknown name", (*D, "clip.mp4", "-o", "out.mp4", "--weights", "bogus"), ("bogus",)),
    Case(
        "rain and weights", (*D, "clip.mp4", "-o", "out.mp4", "--rain", "heavy", *W), ("--rain", "--weights")
    ),
    Case("unknown rain", (*D, "clip.mp4", "-o", "out.mp4", "--rain", "storm"), ("storm",)),
    Case("batch 0", (*D, "clip.mp4", "-o", "out.mp4", "--batch", "0", *W), ("--batch",)),
    Case("batch text", (*D, "clip.mp4", "-o", "out.mp4", "--batch", "two", *W), ("--batch",)),
    Case("tile too small", (*D, "clip.mp4", "-o", "out.mp4", "--tile", "10", *W), ("--tile",)),
    Case(
        "negative overlap", (*D, "clip.mp4", "-o", "out.mp4", "--tile-overlap", "-1", *W), ("--tile-overlap",)
    ),
    Case("crf too high", (*D, "clip.mp4", "-o", "out.mp4", "--crf", "99", *W), ("--crf",)),
    Case("start text", (*D, "clip.mp4", "-o", "out.mp4", "--start", "soon", *W), ("soon",)),
    Case("start nan", (*D, "clip.mp4", "-o", "out.mp4", "--start", "nan", *W), ("nan",)),
    Case("start inf", (*D, "clip.mp4", "-o", "out.mp4", "--start", "inf", *W), ("inf",)),
    Case("negative start", (*D, "clip.mp4", "-o", "out.mp4", "--start", "-1", *W), ("negative",)),
    Case(
        "end before start", (*D, "clip.mp4", "-o", "out.mp4", "--start", "1", "--end", "0.5", *W), ("--end",)
    ),
    Case("start past the end", (*D, "clip.mp4", "-o", "out.mp4", "--start", "99", *W), ("no video frames",)),
    Case("fps 0 for frames", (*D, "frames", "-o", "out.mp4", "--fps", "0", *W), ("--fps",)),
    Case("fps nan", (*D, "frames", "-o", "out.mp4", "--fps", "nan", *W), ("--fps",)),
    Case(
        "no GPU",
        (*D, "clip.mp4", "-o", "out.mp4", "--device", "cuda", "--weights", "tiny.safetensors"),
        ("cuda",),
    ),
    Case(
        "bad device",
        (*D, "clip.mp4", "-o", "out.mp4", "--device", "tpu", "--weights", "tiny.safetensors"),
        ("tpu",),
    ),
    Case("bad precision", (*D, "clip.mp4", "-o", "out.mp4", "--precision", "fp8", *W), ("fp8",)),
    Case("unknown codec", (*D, "clip.mp4", "-o", "out.mp4", "--codec", "nocodec", *W), ("nocodec",)),
    Case("audio codec", (*D, "clip.mp4", "-o", "out.mp4", "--codec", "aac", *W), ("not a video encoder",)),
    Case(
        "codec for container", (*D, "clip.mp4", "-o", "out.webm", "--codec", "libx264", *W), ("cannot hold",)
    ),
    Case("unknown preset", (*D, "clip.mp4", "-o", "out.mp4", "--preset", "warp9", *W), ("warp9",)),
    Case("unknown pix-fmt", (*D, "clip.mp4", "-o", "out.mp4", "--pix-fmt", "rgb999", *W), ("rgb999",)),
    Case("unknown option", (*D, "clip.mp4", "-o", "out.mp4", "--colour", *W), ("--colour",)),
    Case("threads 0", (*D, "clip.mp4", "-o", "out.mp4", "--threads", "0", *W), ("--threads",)),
    Case("output folder under a file", (*D, "x", "-o", "notes.txt/clean", *W), ("notes.txt", "is a file")),
    Case(
        "json onto weights",
        (*D, "clip.mp4", "-o", "out.mp4", *W, "--json", "tiny.safetensors", "--overwrite"),
        ("is the input",),
    ),
    Case(
        "log onto weights",
        (*D, "clip.mp4", "-o", "out.mp4", *W, "--log", "tiny.safetensors"),
        ("is the input",),
    ),
    Case(
        "json onto output", (*D, "clip.mp4", "-o", "out.mp4", *W, "--json", "out.mp4"), ("--json", "out.mp4")
    ),
    Case(
        "json is log",
        (*D, "clip.mp4", "-o", "out.mp4", *W, "--json", "r.json", "--log", "r.json"),
        ("r.json",),
    ),
    Case(
        "json in frames output",
        (*D, "clip.mp4", "-o", "pngs", *W, "--json", "pngs/r.json"),
        ("inside the output folder",),
    ),
    # --- train ---
    Case("train data missing", (*T, "--data", "nothing", "-o", "w.safetensors"), ("nothing",)),
    Case(
        "train workers typo",
        (*T, "--data", "data", "-o", "w.safetensors", "--workers", "100000"),
        ("--workers",),
    ),
    Case("train seed negative", (*T, "--data", "data", "-o", "w.safetensors", "--seed", "-1"), ("--seed",)),
    Case("search seed huge", (*S, "--data", "data", "-o", "g.json", "--seed", str(2**64)), ("--seed",)),
    Case("train data empty", (*T, "--data", "empty-folder", "-o", "w.safetensors"), ("empty-folder",)),
    Case("train over a clip", (*T, "--data", "data", "-o", "data/alpha/00001.jpg"), ("safetensors",)),
    Case("train mp4 output", (*T, "--data", "data", "-o", "data/clip.mp4"), ("safetensors",)),
    Case("train into data", (*T, "--data", "data", "-o", "data/w.safetensors"), ("inside the input",)),
    Case(
        "train over init",
        (*T, "--data", "data", "-o", "tiny.safetensors", "--init", "tiny.safetensors"),
        ("is the input",),
    ),
    Case(
        "train output exists", (*T, "--data", "data", "-o", "existing.safetensors"), ("exists", "--overwrite")
    ),
    Case("train output folder", (*T, "--data", "data", "-o", "mine"), ("directory",)),
    Case(
        "train run-dir in data",
        (*T, "--data", "data", "-o", "w.safetensors", "--run-dir", "data/run"),
        ("inside the input",),
    ),
    Case(
        "train run-dir a file",
        (*T, "--data", "data", "-o", "w.safetensors", "--run-dir", "notes.txt"),
        ("notes.txt", "is a file"),
    ),
    Case("train preset", (*T, "--data", "data", "-o", "w.safetensors", "--preset", "fog"), ("fog",)),
    Case("train size", (*T, "--data", "data", "-o", "w.safetensors", "--size", "huge"), ("huge",)),
    Case("train flow", (*T, "--data", "data", "-o", "w.safetensors", "--flow", "raft"), ("raft",)),
    Case(
        "train genotype missing",
        (*T, "--data", "data", "-o", "w.safetensors", "--genotype", "g.json"),
        ("g.json",),
    ),
    Case(
        "train genotype garbage",
        (*T, "--data", "data", "-o", "w.safetensors", "--genotype", "notes.txt"),
        ("notes.txt",),
    ),
    Case(
        "train init pickle",
        (*T, "--data", "data", "-o", "w.safetensors", "--init", "pickle.pt"),
        ("pickle.pt",),
    ),
    Case("train steps 0", (*T, "--data", "data", "-o", "w.safetensors", "--steps", "0"), ("--steps",)),
    Case("train crop too big", (*T, "--data", "data", "-o", "w.safetensors", "--crop", "4096"), ("4096",)),
    Case(
        "train l1 negative",
        (*T, "--data", "data", "-o", "w.safetensors", "--l1-weight", "-1"),
        ("--l1-weight",),
    ),
    Case("train device", (*T, "--data", "data", "-o", "w.safetensors", "--device", "gpu9"), ("gpu9",)),
    Case(
        "train lr infinite", (*T, "--data", "data", "-o", "w.safetensors", "--lr", "inf"), ("--lr", "finite")
    ),
    Case(
        "train fusion lr negative",
        (*T, "--data", "data", "-o", "w.safetensors", "--fusion-lr", "-1"),
        ("--fusion-lr", "finite"),
    ),
    # --- search ---
    Case("search lr nan", (*S, "--data", "data", "-o", "g.json", "--lr", "nan"), ("--lr", "finite")),
    Case("search into data", (*S, "--data", "data", "-o", "data/g.json"), ("inside the input",)),
    Case("search output exists", (*S, "--data", "data", "-o", "existing.json"), ("exists", "--overwrite")),
    Case("search history exists", (*S, "--data", "data", "-o", "taken.json"), ("taken.history.csv",)),
    Case("search suffix", (*S, "--data", "data", "-o", "g.txt"), (".json",)),
    Case("search data missing", (*S, "--data", "nothing", "-o", "g.json"), ("nothing",)),
    Case("search warmup", (*S, "--data", "data", "-o", "g.json", "--warmup", "5"), ("--warmup",)),
    Case(
        "search never searching",
        (*S, "--data", "data", "-o", "g.json", "--warmup", "1"),
        ("less than --epochs",),
    ),
    Case(
        "train budget inf", (*T, "--data", "data", "-o", "w.safetensors", "--time-budget", "inf"), ("finite",)
    ),
    Case(
        "search optimizer",
        (*S, "--data", "data", "-o", "g.json", "--arch-optimizer", "lion"),
        ("--arch-optimizer",),
    ),
    Case("search preset", (*S, "--data", "data", "-o", "g.json", "--preset", "fog"), ("fog",)),
    Case("search crop too big", (*S, "--data", "data", "-o", "g.json", "--crop", "4096"), ("4096",)),
    # --- benchmark ---
    Case("unknown set", (*B, "NoSuchSet"), ("NoSuchSet",)),
    Case("not a set", (*B, "empty-folder"), ("empty-folder",)),
    Case("json onto ground truth", (*B, "set", "-m", "input", "--json", "set/v1/gt/1.png"), ("input",)),
    Case("csv into set", (*B, "set", "-m", "input", "--csv", "set/scores.csv"), ("inside the input",)),
    Case("json exists", (*B, "set", "-m", "input", "--json", "existing.json"), ("exists", "--overwrite")),
    Case("json missing folder", (*B, "set", "-m", "input", "--json", "no/r.json"), ("does not exist",)),
    Case("frames into set", (*B, "set", "-m", "input", "--save-frames", "set/out"), ("inside the input",)),
    Case(
        "frames foreign folder",
        (*B, "set", "-m", "input", "--save-frames", "mine", "--overwrite"),
        ("did not write",),
    ),
    Case("json is csv", (*B, "set", "-m", "input", "--json", "r.out", "--csv", "r.out"), ("r.out",)),
    Case("unknown method", (*B, "set", "-m", "magic"), ("magic",)),
    Case("method twice", (*B, "set", "-m", "input", "-m", "input"), ("twice",)),
    Case("weights garbage", (*B, "set", "-m", "input", "--weights", "notes.txt"), ("notes.txt",)),
    Case("sizes differ", (*B, "mismatch", "-m", "input"), ("size",)),
    # --- fetch-weights ---
    Case("nothing to fetch", (*F,), ("--all",)),
    Case("unknown weights", (*F, "mega"), ("mega",)),
    Case("offline", (*F, "light", "--overwrite"), ("offline",), env={"HF_HUB_OFFLINE": "1"}),
    Case(
        "no server",
        (*F, "light", "--overwrite"),
        ("reach",),
        env={"HF_ENDPOINT": f"http://127.0.0.1:{CLOSED}"},
    ),
    Case(
        "dead proxy",
        (*F, "light", "--overwrite"),
        ("proxy",),
        env={"HTTPS_PROXY": f"http://127.0.0.1:{CLOSED}", "HTTP_PROXY": f"http://127.0.0.1:{CLOSED}"},
    ),
    Case("cache is a file", (*F, "light"), ("notes.txt",), env={"TMICS_HOME": "notes.txt"}),
    Case(
        "endpoint port",
        (*F, "light", "--overwrite"),
        ("99999",),
        env={"HF_ENDPOINT": "http://127.0.0.1:99999"},
    ),
]


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace every case starts from (copied afresh for each)."""
    import av

    ws = tmp_path_factory.mktemp("workspace")
    torch.manual_seed(0)
    save_model(build_model("light", "tiny"), ws / "tiny.safetensors")
    (ws / "wdir").mkdir()
    shutil.copy(ws / "tiny.safetensors", ws / "wdir" / "w.safetensors")
    torch.save({"weights": torch.zeros(2)}, ws / "pickle.pt")
    make_video(ws / "clip.mp4", frames=6, audio=True)
    (ws / "x").mkdir()
    shutil.copy(ws / "clip.mp4", ws / "x" / "in.mp4")
    (ws / "empty.mp4").write_bytes(b"")
    (ws / "garbage.mp4").write_bytes(
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    )
    (ws / "notes.txt").write_text("the user's notes\n")
    (ws / "notes").write_text("a file without suffix\n")
    (ws / "existing.mp4").write_bytes(b"an earlier video of the user's")
    (ws / "existing.json").write_text("{}\n")
    (ws / "existing.safetensors").write_bytes(b"keep")
    (ws / "taken.history.csv").write_text("mine\n")
    (ws / "mine").mkdir()
    (ws / "mine" / "photo.png").write_bytes(b"not really a png")
    (ws / "empty-folder").mkdir()
    (ws / "sub").mkdir()
    (ws / "link.mp4").symlink_to("clip.mp4")
    os.link(ws / "clip.mp4", ws / "hard.mp4")
    with av.open(str(ws / "audio.m4a"), "w") as out:  # audio and no video
        stream = out.add_stream("aac", rate=16000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    for t in range(5):
        _write_png(ws / "frames" / f"{t + 1:04d}.png", moving_texture(t, 48, 64))
    for i in range(3):
        clean = moving_texture(i, 32, 40)
        _write_png(ws / "set" / "v1" / "gt" / f"{i + 1}.png", clean)
        _write_png(
            ws / "set" / "v1" / "rain" / f"{i + 1}.png",
            np.clip(clean.astype(int) + 40, 0, 255).astype(np.uint8),
        )
        _write_png(ws / "mismatch" / "v1" / "gt" / f"{i + 1}.png", clean)
        _write_png(ws / "mismatch" / "v1" / "rain" / f"{i + 1}.png", moving_texture(i, 36, 40))
    for name, seed in (("alpha", 0), ("beta", 1)):
        for t in range(6):
            frame = moving_texture(t + 7 * seed, 40, 48)
            (ws / "data" / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(ws / "data" / name / f"{t + 1:05d}.jpg"), frame)
    return ws


def _snapshot(root: Path) -> dict[str, object]:
    """Every entry under `root`: files with their bytes, folders, links with their targets."""
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            found[rel] = "folder"
        else:
            found[rel] = path.read_bytes()
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_error_line_and_nothing_changes(
    case: Case, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(template, ws, symlinks=True)
    if (ws / "hard.mp4").exists():  # copytree does not keep hard links
        (ws / "hard.mp4").unlink()
        os.link(ws / "clip.mp4", ws / "hard.mp4")
    monkeypatch.chdir(ws)
    for var in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "TMICS_DATA"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.setenv("TMICS_HOME", str(ws / "home"))
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    before = _snapshot(ws)
    result = CliRunner().invoke(app, list(case.args))
    lines = result.output.strip().splitlines()
    assert result.exit_code == case.code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in case.words:
        assert word.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in result.output
    assert _snapshot(ws) == before  # no input changed, nothing was left behind
