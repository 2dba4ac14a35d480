import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_datasets import write_clip
from tmics_cli.model import load_model
from tmics_cli.model.io import read_metadata
from tmics_cli.training.losses import alpha_entropy, restoration_loss, ssim
from tmics_cli.training.train import TrainConfig, Trainer, _RankSlice


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    for i, name in enumerate(["alpha", "beta", "held"]):
        write_clip(tmp_path / "clips" / name, frames=7, h=40, w=48, seed=i)
    return tmp_path / "clips"


def _config(tmp_path: Path, clips: Path, **kw) -> TrainConfig:
    base = dict(
        output=str(tmp_path / "w.safetensors"),
        data=[str(clips)],
        holdout=["held"],
        size="tiny",
        steps=4,
        fusion_steps=2,
        batch=2,
        crop=32,
        workers=0,
        val_every=100,
        val_windows=2,
        checkpoint_every=1,
        fusion_lr=1e-3,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_losses() -> None:
    x = torch.rand(2, 3, 24, 24)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert restoration_loss(x, x).item() == pytest.approx(0.0, abs=1e-5)
    assert restoration_loss(x, 1 - x) > restoration_loss(x, (x + 0.02).clamp(0, 1))
    uniform, peaked = torch.zeros(4, 8), torch.zeros(4, 8)
    peaked[:, 0] = 10
    assert alpha_entropy(uniform) > alpha_entropy(peaked) and alpha_entropy(uniform).item() == pytest.approx(
        4 * torch.log(torch.tensor(8.0)).item(), rel=1e-5
    )


def test_l1_weight_reaches_the_training_loss(tmp_path: Path, clips: Path) -> None:
    def first_loss(name: str, **weights: float) -> float:
        cfg = _config(tmp_path / name, clips, steps=1, fusion_steps=0, **weights)
        Path(cfg.output).parent.mkdir()
        Trainer(cfg).fit()
        log = [json.loads(line) for line in (cfg.run_path / "log.jsonl").read_text().splitlines()]
        return next(r["loss"] for r in log if r.get("stage") == "stage1")

    # same seed, same batch, same start: only the L1 term's weight differs (two networks, DNA and CNA)
    without = first_loss("a", l1_weight=0.0)
    assert first_loss("b", l1_weight=20.0) > without + 1e-3
    with pytest.raises(ValueError, match="L1 weight"):
        _config(tmp_path, clips, l1_weight=-1.0).validate()


def test_one_optimiser_step_lowers_the_loss_on_a_fixed_batch(tmp_path: Path, clips: Path) -> None:
    trainer = Trainer(_config(tmp_path, clips))
    dataset, _ = trainer.datasets()
    batch = torch.utils.data.default_collate([dataset[i] for i in range(2)])
    model = trainer.model.train()
    opt = torch.optim.Adam(model.network_parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        out = model(batch["frames"], batch["flows"], return_all=True)
        return restoration_loss(out.dna, batch["target"]) + restoration_loss(out.cna, batch["target"])

    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    assert loss().item() < before.item()


def test_kill_at_the_start_of_stage_two_resumes(tmp_path: Path, clips: Path, monkeypatch) -> None:
    cfg = _config(tmp_path, clips, steps=2, fusion_steps=2)
    original_save = Trainer.save_checkpoint

    def save_then_die(self: Trainer) -> None:
        original_save(self)
        if self.stage == "stage2" and self.step == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg).fit()
    monkeypatch.setattr(Trainer, "save_checkpoint", original_save)
    cfg.resume = True
    assert load_model(Trainer(cfg).fit()).config.genotype.alignment == "ofm"
    state = torch.load(cfg.run_path / "checkpoint.pt", weights_only=True)
    assert state["stage"] == "stage2" and state["step"] == 2


def test_resume_refuses_other_settings(tmp_path: Path, clips: Path) -> None:
    Trainer(_config(tmp_path, clips, steps=1, fusion_steps=0)).fit()
    with pytest.raises(ValueError, match="was written with --crop 32"):
        Trainer(_config(tmp_path, clips, crop=40, resume=True, overwrite=True)).fit()  # 40: smaller side
    (tmp_path / "w.run" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        Trainer(_config(tmp_path, clips, resume=True, overwrite=True)).fit()


def test_ranks_take_disjoint_slices_of_each_batch_index_range() -> None:
    world, batch, start = 3, 2, 12
    seen = [list(_RankSlice(start, 4 * world * batch, rank, world, batch)) for rank in range(world)]
    assert all(len(s) == 4 * batch for s in seen)
    flat = sorted(i for s in seen for i in s)
    assert flat == list(range(start, start + 4 * world * batch))
    assert seen[1][:batch] == [start + batch, start + batch + 1]


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_kill_and_resume_reaches_the_uninterrupted_state(tmp_path: Path, clips: Path, monkeypatch) -> None:
    straight = _config(tmp_path, clips, output=str(tmp_path / "a.safetensors"))
    Trainer(straight).fit()

    resumed = _config(tmp_path, clips, output=str(tmp_path / "b.safetensors"))
    original_save = Trainer.save_checkpoint

    def save_then_die(self: Trainer) -> None:
        original_save(self)
        if self.stage == "stage1" and self.step == 3:
            raise KeyboardInterrupt  # as if killed right after the step-3 checkpoint

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        Trainer(resumed).fit()
    monkeypatch.setattr(Trainer, "save_checkpoint", original_save)
    assert torch.load(resumed.run_path / "checkpoint.pt", weights_only=True)["step"] == 3
    resumed.resume = True
    Trainer(resumed).fit()

    a, b = _state(straight.run_path / "checkpoint.pt"), _state(resumed.run_path / "checkpoint.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["aas.score.2.weight"], torch.zeros_like(a["aas.score.2.weight"]))  # stage 2 ran


def test_weights_written_by_train_load_and_run(tmp_path: Path, clips: Path) -> None:
    cfg = _config(tmp_path, clips, preset="heavy", steps=2, fusion_steps=1)
    path = Trainer(cfg).fit()
    model = load_model(path)
    assert model.config.genotype.alignment == "tgm"
    out = model(torch.rand(1, 5, 3, 21, 30))
    assert out.shape == (1, 3, 21, 30) and torch.isfinite(out).all()
    log = [json.loads(line) for line in (cfg.run_path / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[-1]["event"] == "saved"
    inputs = {r["val"]["psnr_input"] for r in log if "val" in r}
    assert len(inputs) == 1  # the held-out set is fixed: its rainy input scores the same every time


def test_ddp_with_two_cpu_processes(tmp_path: Path, clips: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "tmics_cli",
        "train",
        "-o",
        str(out),
        "--data",
        str(clips),
        "--holdout",
        "held",
        "--size",
        "tiny",
        "--steps",
        "3",
        "--fusion-steps",
        "1",
        "--batch",
        "1",
        "--crop",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    log = [
        json.loads(line) for line in out.with_suffix(".run").joinpath("log.jsonl").read_text().splitlines()
    ]
    assert log[0]["world_size"] == 2
    assert max(r.get("step", 0) for r in log if r.get("stage") == "stage1") == 3
    assert load_model(out)(torch.rand(1, 5, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_pyramid_flow_is_pretrained_before_stage_one(tmp_path: Path, clips: Path) -> None:
    cfg = _config(tmp_path, clips, flow="pyramid", flow_steps=3, steps=1, fusion_steps=0, crop=32)
    trainer = Trainer(cfg)
    assert trainer.stage == "flow"
    before = [p.detach().clone() for p in trainer.model.flow_estimator.parameters()]
    path = trainer.fit()
    after = list(load_model(path).flow_estimator.parameters())
    assert any(not torch.allclose(a, b, atol=1e-3) for a, b in zip(after, before, strict=True))
    log = [json.loads(line) for line in (cfg.run_path / "log.jsonl").read_text().splitlines()]
    assert any(r.get("stage") == "flow" for r in log)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "drizzle"], "'drizzle' is not one of"),
        (["--size", "huge"], "'huge' is not one of"),
        (["--flow", "raft"], "'raft' is not one of"),
        (["--device", "cuda:3"], "device 'cuda:3'"),
        (["--rain", "snow"], "unknown rain preset 'snow'"),
    ],
)
def test_cli_bad_options_give_one_line_and_exit_2(
    tmp_path: Path, clips: Path, args: list[str], message: str
) -> None:
    cmd = [
        sys.executable,
        "-m",
        "tmics_cli",
        "train",
        "-o",
        str(tmp_path / "w.safetensors"),
        "--data",
        str(clips),
    ]
    run = subprocess.run(cmd + args, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w.safetensors").exists()


def test_cli_bad_paths_give_one_line_and_exit_2(tmp_path: Path, clips: Path) -> None:
    base = [sys.executable, "-m", "tmics_cli", "train", "--size", "tiny", "--steps", "1"]
    cases = [
        (["-o", str(tmp_path / "w.safetensors"), "--data", str(tmp_path / "missing")], "no data at"),
        (["-o", str(tmp_path / "nope" / "w.safetensors"), "--data", str(clips)], "does not exist"),
        (["-o", str(tmp_path), "--data", str(clips)], "is a directory"),
    ]
    for args, message in cases:
        run = subprocess.run(base + args, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_init_starts_from_given_weights_and_refuses_another_network(tmp_path: Path, clips: Path) -> None:
    first = Trainer(_config(tmp_path, clips, steps=2, fusion_steps=0)).fit()
    start = load_model(first)
    cfg = _config(tmp_path / "ft", clips, init=str(first), steps=1, fusion_steps=0)
    (tmp_path / "ft").mkdir()
    trainer = Trainer(cfg)
    for name, tensor in start.state_dict().items():  # before any step: exactly the given weights
        assert torch.equal(trainer.model.state_dict()[name], tensor), name
    with pytest.raises(ValueError, match="different network"):
        Trainer(_config(tmp_path / "ft", clips, init=str(first), preset="heavy"))


def test_time_budget_fixes_stage_one_steps_once_and_keeps_them(
    tmp_path: Path, clips: Path, monkeypatch
) -> None:
    monkeypatch.setattr("tmics_cli.training.train.BUDGET_PROBE", (1, 3))
    # a budget already spent when the loader is ready: stage 1 stops one measured step later, stage 2
    # after its first step
    spent = _config(tmp_path, clips, steps=50, time_budget=1e-3, run_dir=str(tmp_path / "spent"))
    Trainer(spent).fit()
    records = [json.loads(line) for line in (tmp_path / "spent" / "log.jsonl").read_text().splitlines()]
    assert [r["stage1_steps"] for r in records if "stage1_steps" in r] == [2]
    assert json.loads(read_metadata(spent.output)["steps"]) == {"stage1": 2, "stage2": 1}
    checkpoint = torch.load(tmp_path / "spent" / "checkpoint.pt", weights_only=True)
    assert checkpoint["budget_steps"] == 2 and checkpoint["stage"] == "stage2" and checkpoint["step"] == 1
    # a resumed run keeps the saved count, with or without --time-budget
    spent_dir = str(tmp_path / "spent")
    resumed = Trainer(_config(tmp_path, clips, steps=50, run_dir=spent_dir, resume=True, overwrite=True))
    resumed.load_checkpoint()
    assert resumed.cfg.steps == 2
    # an ample budget: --steps is the ceiling
    ample_dir = str(tmp_path / "ample")
    ample = _config(tmp_path, clips, steps=5, time_budget=1e6, run_dir=ample_dir, overwrite=True)
    Trainer(ample).fit()
    records = [json.loads(line) for line in (tmp_path / "ample" / "log.jsonl").read_text().splitlines()]
    assert not [r for r in records if r.get("event") == "budget"]
    assert json.loads(read_metadata(ample.output)["steps"]) == {"stage1": 5, "stage2": 2}


def test_time_budget_measures_from_a_tenth_to_a_fifth_and_cuts_only_when_slower(
    tmp_path: Path, clips: Path, monkeypatch
) -> None:
    from tmics_cli.training import train as train_module

    clock = {"now": 0.0}
    monkeypatch.setattr(train_module.time, "time", lambda: clock["now"])
    cfg = _config(tmp_path, clips, steps=10_000, fusion_steps=50, workers=0, time_budget=100.0)
    trainer = Trainer(cfg)
    trainer.started = 0.0
    probe_time, probe_step, rate = None, 0, None
    for step in range(1000):  # 10 steps/s
        clock["now"], trainer.step = step / 10, step
        probe_time, probe_step, rate = trainer._probe(probe_time, probe_step, 0.0, 0)
        if rate is not None:
            break
    assert (probe_step, trainer.step, rate) == (100, 200, pytest.approx(10.0))
    steps = trainer._steps_from_budget(rate)
    assert steps == 200 + int(((100 - clock["now"]) * train_module.BUDGET_MARGIN - 50 / 10) * 10)
    assert 850 < steps < 900 and trainer.budget_steps == steps
    clock["now"], trainer.step = steps / 10, steps  # on schedule: stage 1 runs to its end
    assert not trainer._stage1_overdue()
    clock["now"] = 96.0  # slower than measured: 4 s left, stage 2 needs 5
    assert trainer._stage1_overdue()
    # under DDP the measurement spans a fixed number of steps, whatever the clock says
    trainer.world, trainer.step, clock["now"] = 2, 10, 50.0
    probe_time, probe_step, rate = trainer._probe(None, 0, 0.0, 0)
    assert (probe_time, probe_step, rate) == (50.0, 10, None)
    trainer.step, clock["now"] = 210, 70.0
    assert trainer._probe(probe_time, probe_step, 0.0, 0)[2] == pytest.approx(10.0)


def test_stage_two_loader_starts_after_a_validation_in_the_main_process(tmp_path: Path, clips: Path) -> None:
    # A loader worker forked after OpenCV's thread pool ran in this process (validation computes DIS
    # flows) used to hang forever at stage 2 (it hung two GPU runs); run in a child with a deadline.
    script = f"""
import cv2, numpy as np
from tmics_cli.training.train import TrainConfig, Trainer
a = np.random.default_rng(0).integers(0, 255, (240, 320), dtype=np.uint8)
cv2.DISOpticalFlow_create(2).calc(a, a, None)  # OpenCV's pool is alive in this process
cfg = TrainConfig(output={str(tmp_path / "w.safetensors")!r}, data=[{str(clips)!r}], holdout=["held"],
                  size="tiny", steps=2, fusion_steps=2, batch=2, crop=32, workers=1, val_every=1,
                  val_windows=1, checkpoint_every=1)
Trainer(cfg).fit()
print("done")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, cwd=Path.cwd()
    )
    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-2000:]


def test_a_holdout_name_the_data_lacks_is_refused_before_any_work(tmp_path: Path, clips: Path) -> None:
    """A typo in --holdout trained on the clip meant for validation and scored on training data."""
    from tmics_cli.data.datasets import DataError
    from tmics_cli.training.train import split_data

    with pytest.raises(DataError, match=r"--holdout hled: no such clip .*alpha, beta, held.*--holdout none"):
        split_data(_config(tmp_path, clips, holdout=["alpha", "hled"]))
    train, val, _ = split_data(_config(tmp_path, clips, holdout=["none"]))
    assert [c.name for c in train] == ["alpha", "beta", "held"] and val == []
    train, val, _ = split_data(_config(tmp_path, clips, holdout=["walk"]))  # the default: passed over here
    assert len(train) == 3 and val == []
    train, val, _ = split_data(_config(tmp_path, clips))
    assert [c.name for c in train] == ["alpha", "beta"] and [c.name for c in val] == ["held"]
    import cv2
    import numpy as np

    for i in range(3):  # a paired set: train cannot hold one of its videos out (it would train on it)
        for kind in ("rain", "gt"):
            (tmp_path / "paired" / "pair_a" / kind).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(tmp_path / "paired" / "pair_a" / kind / f"{i}.png"), np.zeros((40, 48, 3), np.uint8)
            )
    both = [str(clips), str(tmp_path / "paired")]
    with pytest.raises(DataError, match="--holdout pair_a: a paired video; train holds out clean clips only"):
        split_data(_config(tmp_path, clips, data=both, holdout=["pair_a"]))
    assert len(split_data(_config(tmp_path, clips, data=both, holdout=["pair_a"]), hold_paired=True)[2]) == 1


def test_the_weights_say_the_steps_that_ran_after_a_resume_asking_fewer(tmp_path: Path, clips: Path) -> None:
    """Resumed with fewer steps than its checkpoint had run, the file said the fewer (20, not 240)."""
    Trainer(_config(tmp_path, clips, steps=4, fusion_steps=0)).fit()
    again = _config(tmp_path, clips, steps=2, fusion_steps=0, resume=True, overwrite=True)
    Trainer(again).fit()
    assert json.loads(read_metadata(tmp_path / "w.safetensors")["steps"]) == {"stage1": 4, "stage2": 0}


def test_a_schedule_that_would_rise_is_refused(tmp_path: Path, clips: Path) -> None:
    """A recipe's lr_min = 1 above lr made the learning rate climb to 1 (held-out Y-PSNR 8 dB)."""
    with pytest.raises(ValueError, match="lr_min 1.0 is above lr 0.0003"):
        _config(tmp_path, clips, lr_min=1.0).validate()


def test_an_empty_rain_preset_is_refused_not_taken_for_the_default(tmp_path: Path, clips: Path) -> None:
    with pytest.raises(ValueError, match="unknown rain preset ''"):
        _config(tmp_path, clips, rain="").validate()


def test_a_resume_naming_the_same_data_otherwise_is_not_refused(
    tmp_path: Path, clips: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--data ./clips` against `clips`, or `--rain light` against the default of the light preset, were
    refused as other settings ("written with --rain None")."""
    Trainer(_config(tmp_path, clips, steps=2, fusion_steps=0)).fit()
    monkeypatch.chdir(clips.parent)
    again = _config(tmp_path, clips, steps=2, fusion_steps=0, resume=True, overwrite=True)
    again.data, again.rain = [f"./{clips.name}"], "light"
    Trainer(again).fit()
    other = _config(tmp_path, clips, steps=2, fusion_steps=0, resume=True, overwrite=True, rain="heavy")
    with pytest.raises(ValueError, match="written with --rain 'light'"):
        Trainer(other).fit()
