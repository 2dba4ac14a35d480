import pytest
import torch

from tmics_cli.model import OPERATION_NAMES, OPERATIONS, Cell, MixedLayer, build_operation
from tmics_cli.model.ops import channel_max, expand_channels


@pytest.mark.parametrize("name", OPERATION_NAMES)
def test_operation_keeps_shape_and_passes_gradients(name: str) -> None:
    op = build_operation(name, 6)
    x = torch.randn(2, 6, 13, 11, requires_grad=True)
    y = op(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in op.parameters())
    convs = [m for m in op.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d))]
    assert len(convs) == 3, f"{name} must have three conv layers, has {len(convs)}"


def test_registry_has_the_eight_operations_of_the_paper() -> None:
    assert len(OPERATIONS) == 8 == len(set(OPERATION_NAMES))
    with pytest.raises(ValueError, match="unknown operation"):
        build_operation("conv_7x7", 4)


def test_dilated_operations_see_further_than_plain_ones() -> None:
    # receptive field: a unit impulse spreads wider through dilated_3x3 than through residual_3x3's first conv
    x = torch.zeros(1, 4, 41, 41)
    x[..., 20, 20] = 1
    x.requires_grad_(True)
    reach = {}
    for name in ("dilated_3x3", "dilated_5x5"):
        op = build_operation(name, 4).eval()
        op(x)[..., 20, 20].sum().backward()
        nz = (x.grad.abs().sum((0, 1)) > 0).nonzero()
        reach[name] = int((nz[:, 0].max() - nz[:, 0].min()).item())
        x.grad = None
    assert reach["dilated_3x3"] == 8  # two 3x3 convs at dilation 2: radius 4
    assert reach["dilated_5x5"] == 16


def test_mixed_layer_is_the_weighted_sum_of_its_operations() -> None:
    layer = MixedLayer(5).eval()
    x = torch.randn(2, 5, 9, 10)
    w = torch.softmax(torch.randn(8), 0)
    expected = sum(wi * op(x) for wi, op in zip(w, layer.ops, strict=True))
    torch.testing.assert_close(layer(x, w), expected)
    one_hot = torch.zeros(8)
    one_hot[3] = 1
    torch.testing.assert_close(layer(x, one_hot), layer.ops[3](x))


def test_cell_runs_its_layers_in_order() -> None:
    cell = Cell(4, ["residual_3x3", "channel_attention"]).eval()
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(cell(x), cell.layers[1](cell.layers[0](x)))
    searchable = Cell(4, None, num_layers=2)
    with pytest.raises(ValueError, match="softmax"):
        searchable(x)
    assert searchable(x, torch.softmax(torch.zeros(2, 8), -1)).shape == x.shape


@pytest.mark.parametrize("channels", [1, 5, 16])
def test_channels_last_channel_max_and_gate_give_the_same_values(channels: int) -> None:
    y = torch.randn(2, channels, 7, 9)
    gate = torch.rand(2, 1, 7, 9)
    y_cl = y.to(memory_format=torch.channels_last)
    assert torch.equal(channel_max(y_cl), y.amax(1, keepdim=True))
    assert torch.equal(y_cl * expand_channels(gate, y_cl), y * gate)
    assert expand_channels(gate, y) is gate  # contiguous: broadcast as it is
    op = build_operation("spatial_attention", 6).eval()
    x = torch.randn(1, 6, 10, 12)
    torch.testing.assert_close(op(x.to(memory_format=torch.channels_last)), op(x), atol=1e-6, rtol=1e-6)
