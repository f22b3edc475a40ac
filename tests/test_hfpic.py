"""HFPIC: samplers, palette, official ICT layout and loading, shared MCD scoring, critic checkpoints, bad input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from adbench_dbt.completion.hfpic.official import load_transformer_state, load_upsampler_state
from adbench_dbt.completion.hfpic.palette import (LUMA, dequantise, fit_grey_palette, quantise, read_ict_palette,
                                                  to_grey)
from adbench_dbt.completion.hfpic.sampling import sample_parallel, sample_raster, top_k_sample
from adbench_dbt.completion.hfpic.transformer import TokenTransformer
from adbench_dbt.completion.hfpic.upsampler import GuidedUpsampler, PatchCritic
from adbench_dbt.completion.scorers import mcd_scores
from adbench_dbt.errors import CheckpointError
from adbench_dbt.registry import create_method, get_method
from test_inpainting_trainer import synthetic_slice

# official ICT state-dict layout (raywzy/ICT 59dd12d); provenance in tests/fixtures/README.md
LAYOUT = json.loads((Path(__file__).parent / "fixtures" / "ict_official_layout.json").read_text())


class RecordingModel:
    """Random logits; records the hole mask of every forward (and the position asked for, in raster mode)."""

    def __init__(self, vocab: int = 6, seed: int = 0) -> None:
        self.vocab, self.gen = vocab, torch.Generator().manual_seed(seed)
        self.calls: list[torch.Tensor] = []
        self.positions: list[int] = []

    def __call__(self, idx: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
        self.calls.append(holes.clone())
        return torch.randn(*idx.shape, self.vocab, generator=self.gen)

    def logits_at(self, idx: torch.Tensor, holes: torch.Tensor, position: int) -> torch.Tensor:
        self.positions.append(position)
        return self(idx, holes)[:, position]


def _problem(batch: int = 4, tokens: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 6, (batch, tokens), generator=gen)
    holes = torch.zeros(batch, tokens, dtype=torch.bool)
    holes[:, 5:11] = True
    holes[0, 2] = True  # one image with an extra hole: counts may differ per image
    return idx, holes


@pytest.mark.parametrize("sampler", ["raster", "parallel"])
def test_sampling_never_changes_visible_tokens(sampler):
    idx, holes = _problem()
    model = RecordingModel()
    out, forwards = (sample_raster(model, idx, holes, top_k=3) if sampler == "raster"
                     else sample_parallel(model, idx, holes, steps=3, top_k=3))
    assert torch.equal(out[~holes], idx[~holes])
    assert (out != idx)[holes].any()  # holes were actually written
    assert forwards == len(model.calls)


def test_raster_visits_holes_in_raster_order_one_forward_each():
    idx, holes = _problem()
    model = RecordingModel()
    _, forwards = sample_raster(model, idx, holes)
    assert model.positions == [2, 5, 6, 7, 8, 9, 10] and forwards == 7
    assert [int(h.sum()) for h in model.calls][:2] == [holes.sum().item(), holes.sum().item() - 1]


def test_parallel_with_as_many_steps_as_holes_fills_one_token_per_step():
    idx = torch.zeros(3, 16, dtype=torch.long)
    holes = torch.zeros(3, 16, dtype=torch.bool)
    holes[:, 3:12] = True  # 9 holes each
    model = RecordingModel()
    out, forwards = sample_parallel(model, idx, holes, steps=9)
    left = torch.stack([h.sum(dim=1) for h in model.calls])  # holes before each step, per image
    assert forwards == 9
    assert left[:, 0].tolist() == list(range(9, 0, -1))
    assert (left == left[:, :1]).all()


def test_parallel_default_schedule_is_cosine_and_finishes():
    idx = torch.zeros(2, 64, dtype=torch.long)
    holes = torch.ones(2, 64, dtype=torch.bool)
    model = RecordingModel()
    sample_parallel(model, idx, holes, steps=8)
    left = [int(h[0].sum()) for h in model.calls]
    assert left == [64] + [math.floor(64 * math.cos(math.pi / 2 * t / 8)) for t in range(1, 8)]


def test_top_k_samples_only_the_k_largest_logits_with_their_renormalised_probabilities():
    logits = torch.tensor([1.0, 3.0, -2.0, 2.5, 0.0, 2.9]).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    picks, probs = top_k_sample(logits, k=3, uniforms=torch.rand(20000, generator=gen))
    assert set(picks.unique().tolist()) == {1, 3, 5}
    top = torch.softmax(torch.tensor([3.0, 2.5, 2.9]), 0)
    freq = torch.stack([(picks == i).float().mean() for i in (1, 3, 5)])
    torch.testing.assert_close(freq, top, atol=0.015, rtol=0)
    expected = {1: top[0], 3: top[1], 5: top[2]}
    assert all(abs(float(p) - float(expected[int(i)])) < 1e-6 for i, p in zip(picks[:50], probs[:50]))
    cold, _ = top_k_sample(logits[:100], k=3, temperature=1e-3, uniforms=torch.rand(100, generator=gen))
    assert (cold == 1).all()


def test_grey_palette_fit_and_quantise_round_trip():
    levels = torch.tensor([0.05, 0.2, 0.21, 0.5, 0.9])
    values = levels[torch.randint(0, 5, (4, 1, 8, 8), generator=torch.Generator().manual_seed(0))]
    centres = fit_grey_palette(values, 5)
    torch.testing.assert_close(centres[:, 0], levels)
    tokens = quantise(values, centres)
    torch.testing.assert_close(dequantise(tokens, centres, 8), values)
    shuffled = centres[torch.tensor([3, 0, 4, 1, 2])]  # quantise does not need sorted centres
    torch.testing.assert_close(dequantise(quantise(values, shuffled), shuffled, 8), values)


def test_ict_rgb_palette_maps_grey_to_the_nearest_rgb_centre(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.uniform(-1, 1, (512, 3))
    raw[:4] = [[-1, -1, -1], [0, 0, 0], [1, 1, 1], [0.2, 0.1, 0.3]]
    np.save(tmp_path / "kmeans_centers.npy", raw)
    centres = read_ict_palette(tmp_path / "kmeans_centers.npy")
    torch.testing.assert_close(centres, torch.from_numpy(np.rint(127.5 * (raw + 1)) / 255).float())
    grey = torch.linspace(0, 1, 256).view(1, 1, 16, 16)
    tokens = quantise(grey, centres)
    pixel = torch.round(grey.flatten() * 255) / 255
    brute = ((pixel[:, None, None] - centres.double()[None]) ** 2).sum(-1).argmin(1)
    assert torch.equal(tokens[0], brute)
    assert tokens[0, 0] == 0 and tokens[0, -1] == 2
    colours = dequantise(tokens, centres, 16)
    assert colours.shape == (1, 3, 16, 16)
    torch.testing.assert_close(to_grey(colours), (colours * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True))


def test_palette_file_of_the_wrong_shape_is_one_clear_error(tmp_path):
    np.save(tmp_path / "grey.npy", np.zeros((512, 1)))
    with pytest.raises(CheckpointError, match=r"grey.npy: palette of shape \(512, 1\), expected K x 3"):
        read_ict_palette(tmp_path / "grey.npy")
    with pytest.raises(CheckpointError, match="missing.npy: palette file not found"):
        read_ict_palette(tmp_path / "missing.npy")


def _shapes(state: dict) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state.items()}


def test_state_dicts_have_the_official_ict_names_and_shapes():
    cfg = LAYOUT["gpt"]["config"]
    gpt = TokenTransformer(cfg["vocab_size"], cfg["block_size"], cfg["n_layer"], cfg["n_embd"], cfg["n_head"])
    assert _shapes(gpt.official_state_dict()) == LAYOUT["gpt"]["manifest"]
    assert sum(p.numel() for p in gpt.parameters()) == LAYOUT["gpt"]["n_params"]
    assert _shapes(GuidedUpsampler(3).state_dict()) == LAYOUT["generator"]["manifest"]
    assert sum(p.numel() for p in GuidedUpsampler(3).parameters()) == LAYOUT["generator"]["n_params"]
    critic = PatchCritic(3)
    assert _shapes(critic.state_dict()) == LAYOUT["discriminator"]["manifest"]
    assert sum(p.numel() for p in critic.parameters()) == LAYOUT["discriminator"]["n_params"]
    grey = {k: v[:] for k, v in LAYOUT["generator"]["manifest"].items()}
    grey["encoder.1.weight"][1], grey["decoder.5.weight"][0], grey["decoder.5.bias"][0] = 2, 1, 1
    assert _shapes(GuidedUpsampler(1).state_dict()) == grey
    paper = get_method("hfpic").Config.model_validate(get_method("hfpic").profiles()["paper"])
    assert (paper.n_layer, paper.n_embd, paper.n_head, paper.top_k, paper.palette_size) == (35, 1024, 8, 40, 512)
    assert (paper.window, paper.hole, paper.stride, paper.completions, paper.sampling) == (256, 128, 32, 10, "raster")


def _write_ict(directory: Path, gpt: TokenTransformer, upsampler: GuidedUpsampler) -> tuple[Path, Path]:
    (directory / "Transformer").mkdir(parents=True)
    (directory / "Upsample").mkdir()
    stage1, stage2 = directory / "Transformer" / "latest.pth", directory / "Upsample" / "InpaintingModel_gen.pth"
    torch.save({"model": gpt.official_state_dict(), "epoch": 3, "tokens": 0, "best_validation_loss": 1.0}, stage1)
    torch.save({"iteration": 10, "generator": {f"module.{k}": v for k, v in upsampler.state_dict().items()}}, stage2)
    return stage1, stage2


def test_official_ict_checkpoint_loads_by_key(tmp_path):
    np.save(tmp_path / "kmeans_centers.npy", np.random.default_rng(0).uniform(-1, 1, (8, 3)))
    overrides = {"channels": 3, "palette_file": str(tmp_path / "kmeans_centers.npy")}
    torch.manual_seed(5)
    gpt, upsampler = TokenTransformer(8, 64, 1, 16, 2), GuidedUpsampler(3, cnum=4)
    _write_ict(tmp_path / "ict", gpt, upsampler)
    cls = get_method("hfpic")
    config = cls.Config.model_validate({**cls.profiles()["smoke"], **overrides})
    method = cls.restore(tmp_path / "ict", config)
    for ours, theirs in ((method.backbone.transformer, gpt), (method.backbone.upsampler, upsampler)):
        for key, value in theirs.state_dict().items():
            assert torch.equal(ours.state_dict()[key], value), key
    assert [p.name for p in cls.checkpoint_files(tmp_path / "ict", config)] == ["latest.pth", "InpaintingModel_gen.pth"]
    with torch.inference_mode():
        assert method.score_windows(torch.rand(2, 1, 32, 32))["mcd_image"].shape == (2,)
    with pytest.raises(CheckpointError, match="set palette_file"):
        cls.restore(tmp_path / "ict", config.model_copy(update={"palette_file": None}))


def test_wrong_stage_or_channel_count_is_one_clear_error(tmp_path):
    stage1, stage2 = _write_ict(tmp_path, TokenTransformer(8, 64, 1, 16, 2), GuidedUpsampler(3, cnum=4))
    with pytest.raises(CheckpointError, match=r"InpaintingModel_gen.pth: an ICT stage-2 upsampler checkpoint, "
                                              r"expected the stage-1 transformer"):
        load_transformer_state(TokenTransformer(8, 64, 1, 16, 2), stage2)
    with pytest.raises(CheckpointError, match=r"latest.pth: an ICT stage-1 transformer checkpoint"):
        load_upsampler_state(GuidedUpsampler(3, cnum=4), stage1, 3)
    with pytest.raises(CheckpointError, match=r"InpaintingModel_gen.pth: a 3-channel upsampler .* set channels=3"):
        load_upsampler_state(GuidedUpsampler(1, cnum=4), stage2, 1)
    with pytest.raises(CheckpointError, match=r"latest.pth: tok_emb.weight has shape \(8, 16\).* expects \(16, 16\)"):
        load_transformer_state(TokenTransformer(16, 64, 1, 16, 2), stage1)
    method = create_method("hfpic", "smoke")
    method.save(tmp_path / "grey")
    with pytest.raises(CheckpointError, match="state.pt: does not fit method 'hfpic'"):
        get_method("hfpic").load(tmp_path / "grey", config=method.config.model_copy(update={"channels": 3}))


@pytest.fixture(scope="module")
def picard_dir(tmp_path_factory) -> Path:
    picard = create_method("picard", "smoke")
    picard.fit([synthetic_slice(i) for i in range(2)])
    return picard.save(tmp_path_factory.mktemp("picard") / "model")


def test_critic_checkpoint_adds_feature_variants_and_mcd_ignores_the_backbone(picard_dir):
    image_only = create_method("hfpic", "smoke")
    assert image_only.variants == ("mcd_image", "mean_image", "median_image")
    assert "critic_checkpoint" in get_method("hfpic").notes
    hfpic = create_method("hfpic", "smoke", {"critic_checkpoint": str(picard_dir)})
    assert set(hfpic.variants) == set(get_method("picard").variants)
    picard = get_method("picard").load(picard_dir)
    windows = torch.rand(3, 1, 32, 32)
    with torch.inference_mode():
        completions = hfpic.backbone.complete(windows)
        ours = hfpic.score_completions(completions)
        theirs = picard.score_completions(completions)  # PICARD's scoring of HFPIC's completions
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    assert torch.equal(mcd_scores(completions)["mcd_image"], ours["mcd_image"])


def test_missing_or_wrong_critic_checkpoint_is_one_clear_error(tmp_path, picard_dir):
    with pytest.raises(CheckpointError, match=r"nowhere: critic checkpoint not found \(expected a PICARD model"):
        create_method("hfpic", "smoke", {"critic_checkpoint": str(tmp_path / "nowhere")})
    torch.save({"generator": {}}, tmp_path / "dis_00000001.pt")
    with pytest.raises(CheckpointError, match=r"dis_00000001.pt: no PICARD local critic \(expected key 'localD'"):
        create_method("hfpic", "smoke", {"critic_checkpoint": str(tmp_path / "dis_00000001.pt")})
    with pytest.raises(CheckpointError, match=r"critic for 32 px holes"):
        create_method("hfpic", "smoke", {"critic_checkpoint": str(picard_dir), "window": 64, "hole": 32})


def test_all_windows_and_completions_share_each_forward():
    method = create_method("hfpic", "smoke", {"completions": 5, "parallel_steps": 4})
    batches: list[int] = []
    method.backbone.transformer.register_forward_hook(lambda mod, i, o: batches.append(i[0].shape[0]))
    with torch.inference_mode():
        done = method.backbone.complete(torch.rand(3, 1, 32, 32))
    assert batches == [15] * 4 and method.backbone.last_forwards == 4
    assert done.samples.shape == (3, 5, 1, 32, 32)
    raster = create_method("hfpic", "smoke", {"sampling": "raster", "completions": 2})
    with torch.inference_mode():
        raster.backbone.complete(torch.rand(2, 1, 32, 32))
    assert raster.backbone.last_forwards == int(raster.backbone.token_holes.sum()) == 16


def test_fit_learns_a_palette_and_save_load_round_trip(tmp_path):
    method = create_method("hfpic", "smoke")
    before = method.backbone.palette.clone()
    method.fit([synthetic_slice(i) for i in range(3)])
    assert not torch.equal(method.backbone.palette, before)
    method.save(tmp_path / "model")
    loaded = get_method("hfpic").load(tmp_path / "model")
    assert torch.equal(loaded.backbone.palette, method.backbone.palette)
    test = synthetic_slice(9)
    torch.manual_seed(4)
    a = method.score_map(test)
    torch.manual_seed(4)
    b = loaded.score_map(test)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_bench_windows_mode_reports_forwards_and_the_component_estimate(tmp_path):
    from adbench_dbt.bench import bench_row, merge_bench, time_windows

    sl = synthetic_slice(3)
    for sampling, forwards in (("raster", 16), ("parallel", 3)):
        method = create_method("hfpic", "smoke", {"sampling": sampling})
        timing = time_windows(method, sl, 2, 1)
        assert timing["windows"] == 2 and timing["forwards_per_window"] == forwards / 2
        assert timing["timing"].startswith("estimated") and timing["s_per_slice"] > 0
        table = merge_bench(tmp_path / "bench.csv", [bench_row("hfpic", "smoke", {"sampling": sampling}, method,
                                                               timing)])
    assert list(table["forwards_per_window"]) == [8.0, 1.5] and list(table["batch_size"]) == [2, 2]
    probe = create_method("hfpic", "smoke").backbone.cost_probe(torch.rand(2, 1, 32, 32))
    assert probe["s_per_window"] == pytest.approx((3 * probe["s_per_forward"] + probe["s_rest"]) / 2)
    telea = time_windows(create_method("telea", "smoke"), sl, 3, 1)
    assert telea["timing"].startswith("measured") and telea["forwards_per_window"] is None


def test_adbench_methods_says_feature_variants_need_a_critic(capsys, monkeypatch):
    from adbench_dbt.cli import main

    with pytest.raises(SystemExit) as done:
        main(["methods"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    rows = out[out.index("│ hfpic"):]  # the table wraps cells: the notes column continues on the next lines
    assert "*_feature variants only with" in rows.splitlines()[0] and "critic_checkpoint" in rows
