"""DeepFill-v1 generator + critics match the official PICARD checkpoints tensor for tensor and layer for layer."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from adbench_dbt.errors import CheckpointError
from adbench_dbt.completion.critics import GlobalCritic, LocalCritic
from adbench_dbt.completion.deepfill import ELU, Conv2dBlock, InpaintGenerator, elu
from adbench_dbt.completion.official_checkpoints import find_checkpoint, load_official, save_official

# The official PICARD checkpoint layout (tensor names/shapes, parameter counts, live dropout, per-layer shapes and conv
# hyper-parameters); provenance in tests/fixtures/README.md.
LAYOUT = Path(__file__).parent / "fixtures" / "picard_official_layout.json"


@pytest.fixture(scope="module")
def official() -> dict:
    return json.loads(LAYOUT.read_text())


@pytest.fixture(scope="module")
def nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"generator": InpaintGenerator(1, 32), "localD": LocalCritic(1, 32, 128), "globalD": GlobalCritic(1, 32, 256)}


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def test_every_tensor_name_and_shape_matches_official(nets, official):
    assert _shapes(nets["generator"]) == official["generator"]
    assert len(official["generator"]) == 84
    for name in ("localD", "globalD"):
        assert _shapes(nets[name]) == official["discriminator"][name]


def test_parameter_counts(nets, official):
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    assert counts == {"generator": 3_596_162, "localD": 674_945, "globalD": 699_521}
    ref = official["param_counts"]
    assert counts["generator"] == ref["generator_total"]
    assert sum(p.numel() for p in nets["generator"].coarse_generator.parameters()) == ref["coarse_generator"]
    assert sum(p.numel() for p in nets["generator"].fine_generator.parameters()) == ref["fine_generator"]
    assert (counts["localD"], counts["globalD"]) == (ref["localD"], ref["globalD"])


def test_per_layer_output_shapes(nets, official):
    seen: dict[str, list[int]] = {}
    handles = []
    for prefix, net in nets.items():
        net = net.eval()
        for name, module in net.named_modules():
            key = f"{prefix}.{name}"
            if key in official["output_shapes"]:
                handles.append(module.register_forward_hook(
                    lambda m, i, o, key=key: seen.__setitem__(key, list(o.shape))))
    x = torch.rand(1, 1, 256, 256) * 2 - 1
    mask = torch.zeros(1, 1, 256, 256)
    mask[..., 64:192, 64:192] = 1
    with torch.no_grad():
        outputs = nets["generator"](x * (1 - mask), mask)
        nets["localD"](x[..., 64:192, 64:192])
        nets["globalD"](x)
        feature = nets["localD"].features(x[..., 64:192, 64:192])
    for h in handles:
        h.remove()
    expected = dict(official["output_shapes"])
    # the official attention also returns a flow visualisation (second entry), which is not computed here
    expected["generator.fine_generator.contextul_attention"] = expected["generator.fine_generator.contextul_attention"][0]
    assert list(feature.shape) == expected.pop("localD.saved_featuremap (MCD feature)")
    official_outputs = expected.pop("generator.OUTPUT(x_stage1, x_stage2, offset_flow)")
    assert [list(o.shape) for o in outputs] == official_outputs[:2]
    assert seen == expected


def test_conv_hyperparameters(nets, official):
    activations = {"ELU": torch.nn.ELU, "ReLU": torch.nn.ReLU, "LeakyReLU": torch.nn.LeakyReLU}
    modules = {f"{p}.{n}": m for p, net in nets.items() for n, m in net.named_modules()}
    for key, spec in official["conv_blocks"].items():
        block = modules[key]
        conv = block.conv
        assert (conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.padding[0],
                conv.dilation[0]) == (spec["in"], spec["out"], spec["k"], spec["stride"], spec["pad"],
                                      spec["dilation"]), key
        if spec["act"] == "none":
            assert block.activation is None, key
        else:
            assert isinstance(block.activation, activations[spec["act"]]), key
        assert (block.dropout is not None) == spec["dropout2d_module"], key


def test_released_dropout_liveness_and_fine_switch(nets, official):
    gen = nets["generator"]
    gen.set_dropout(0.5)
    assert gen.live_dropout() == official["dropout_active"]
    gen.set_dropout(0.5, fine_stage=True)
    live = gen.live_dropout()
    assert set(official["dropout_active"]) < set(live)
    assert "fine_generator.pmconv1.dropout" in live and "fine_generator.allconv16.dropout" in live
    assert not any(f"coarse_generator.conv{i}.dropout" in live for i in range(11, 17))
    gen.set_dropout(0.0)
    assert gen.live_dropout() == []
    with pytest.raises(ValueError):
        gen.set_dropout(1.0)


def test_dropout_is_per_sample_channel_mask_and_off_in_training_context():
    torch.manual_seed(0)
    gen = InpaintGenerator(1, 8).eval()
    gen.set_dropout(0.5)
    x = torch.rand(1, 1, 32, 32).repeat(4, 1, 1, 1) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    with torch.no_grad():
        stage1, _ = gen(x * (1 - mask), mask)
        assert not torch.allclose(stage1[0], stage1[1])  # independent masks per sample
        features = gen.coarse_generator.conv2_downsample(torch.ones(2, 8, 16, 16))
        dropped = (features == 0).all(dim=(2, 3))  # Dropout2d zeroes whole channels
        assert dropped.any() and not torch.equal(dropped[0], dropped[1])
        with gen.dropout_off():
            a, _ = gen(x * (1 - mask), mask)
            torch.testing.assert_close(a[0], a[1])
        assert gen.live_dropout()  # restored after the block


def test_official_layout_round_trip(tmp_path, official):
    """A checkpoint written in the official layout with random tensors loads strictly via the loader."""
    torch.manual_seed(1)
    gen_state = {k: torch.randn(shape) for k, shape in official["generator"].items()}
    dis_state = {name: {k: torch.randn(shape) for k, shape in keys.items()}
                 for name, keys in official["discriminator"].items()}
    torch.save(gen_state, tmp_path / "gen_00130000.pt")
    torch.save(dis_state, tmp_path / "dis_00130000.pt")
    torch.save({k: v * 0 for k, v in gen_state.items()}, tmp_path / "gen_00005000.pt")
    torch.save(dis_state, tmp_path / "dis_00005000.pt")
    torch.save(gen_state, tmp_path / "gen_00200000.pt")  # no matching dis file: incomplete, skipped
    gen, local, glob = InpaintGenerator(), LocalCritic(), GlobalCritic()
    assert load_official(tmp_path, gen, local, glob) == 130000
    for k, v in gen.state_dict().items():
        torch.testing.assert_close(v, gen_state[k])
    torch.testing.assert_close(local.linear.weight, dis_state["localD"]["linear.weight"])
    torch.testing.assert_close(glob.linear.weight, dis_state["globalD"]["linear.weight"])
    assert load_official(tmp_path, gen, local, glob, iteration=5000) == 5000
    assert float(gen.coarse_generator.conv1.conv.weight.detach().abs().sum()) == 0
    with pytest.raises(CheckpointError, match="200000"):
        find_checkpoint(tmp_path, 200000)


def test_official_loader_errors_name_the_file(tmp_path):
    gen, local, glob = InpaintGenerator(1, 8), LocalCritic(1, 8, 32), GlobalCritic(1, 8, 64)
    with pytest.raises(CheckpointError, match="no gen_"):
        load_official(tmp_path, gen, local, glob)
    save_official(tmp_path, 7, gen, local, glob)
    assert load_official(tmp_path, gen, local, glob) == 7
    with pytest.raises(CheckpointError, match="gen_00000007.pt"):
        load_official(tmp_path, InpaintGenerator(1, 16), local, glob)
    torch.save({"localD": local.state_dict()}, tmp_path / "dis_00000007.pt")
    with pytest.raises(CheckpointError, match="localD"):
        load_official(tmp_path, gen, local, glob)


def test_module_prefix_from_data_parallel_saves_is_accepted(tmp_path):
    gen, local, glob = InpaintGenerator(1, 4), LocalCritic(1, 4, 16), GlobalCritic(1, 4, 32)
    torch.save({f"module.{k}": v for k, v in gen.state_dict().items()}, tmp_path / "gen_00000001.pt")
    torch.save({"localD": local.state_dict(), "globalD": glob.state_dict()}, tmp_path / "dis_00000001.pt")
    assert load_official(tmp_path, gen, local, glob) == 1


def test_global_critic_extra_conv_for_fov_512():
    critic = GlobalCritic(1, 8, 512, extra_downsample=True)
    assert critic.linear.in_features == GlobalCritic(1, 8, 256).linear.in_features
    assert critic(torch.zeros(2, 1, 512, 512)).shape == (2, 1)
    with pytest.raises(ValueError, match="512x512"):
        critic(torch.zeros(1, 1, 256, 256))


def test_generator_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="multiple of 8"):
        InpaintGenerator(1, 4)(torch.zeros(1, 1, 30, 30), torch.zeros(1, 1, 30, 30))


def test_elu_values_and_gradients_match_torch_elu():
    """exp(x) - 1 instead of expm1: within half an ulp of 1 (6e-8) in fp32; positives untouched; the autograd path gives the same
    values and ELU's gradient; bf16 takes the exponential in fp32."""
    torch.manual_seed(0)
    x = torch.cat([torch.randn(20000) * 3, torch.tensor([0.0, -0.0, 1e-30, -1e-30, -1e-7, -100.0, 80.0])])
    fast = elu(x.clone())
    assert (fast - torch.nn.functional.elu(x)).abs().max() <= 6e-8
    assert torch.equal(fast[x > 0], x[x > 0])
    leaf, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    differentiable = elu(leaf)
    assert torch.equal(differentiable.detach(), fast)
    differentiable.sum().backward()
    torch.nn.functional.elu(reference).sum().backward()
    torch.testing.assert_close(leaf.grad, reference.grad, rtol=1e-6, atol=1e-7)
    low = x.bfloat16()
    torch.testing.assert_close(elu(low.clone()), torch.nn.functional.elu(low), rtol=8e-3, atol=1e-6)


def test_generator_equals_the_official_computation_in_every_mode():
    """The fast forward (`elu`, in-place activations and dropout), also in channels_last and under bf16 autocast,
    against the same weights run with torch's ELU (the official computation): the same completions up to float
    rounding (bf16: its own rounding)."""
    torch.manual_seed(0)
    fast = InpaintGenerator(1, 16).eval()
    reference = copy.deepcopy(fast)
    for block in reference.modules():
        if isinstance(block, Conv2dBlock) and isinstance(block.activation, ELU):
            block.activation = torch.nn.ELU()
    nhwc = copy.deepcopy(fast).to(memory_format=torch.channels_last)
    x = (torch.rand(3, 1, 64, 64) * 2 - 1) * (1 - (mask := _centred_mask(64)))
    runs = {"reference": lambda: reference(x, mask), "fast": lambda: fast(x, mask),
            "channels_last": lambda: nhwc(x.contiguous(memory_format=torch.channels_last), mask)}
    out = {}
    with torch.inference_mode():
        for gen in (fast, reference, nhwc):
            gen.set_dropout(0.5)
        for name, run in runs.items():
            torch.manual_seed(1)  # the same Dropout2d masks in every run
            out[name] = run()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.manual_seed(1)
            low = runs["fast"]()
    for stage in range(2):
        torch.testing.assert_close(out["fast"][stage], out["reference"][stage], rtol=0, atol=1e-5)
        torch.testing.assert_close(out["channels_last"][stage], out["reference"][stage], rtol=0, atol=1e-5)
        assert low[stage].dtype == torch.bfloat16
        assert (low[stage].float() - out["reference"][stage]).abs().max() < 0.02


def _centred_mask(side: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, side, side)
    mask[..., side // 4:3 * side // 4, side // 4:3 * side // 4] = 1
    return mask
