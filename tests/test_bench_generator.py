"""`adbench bench --against-official-picard DIR`: rows, agreement check and one-line errors, against a stand-in
'official' checkout written into tmp_path (the real official code is never used by the tests)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from adbench_dbt.bench import merge_bench
from adbench_dbt.bench_generator import bench_against_official, load_official_networks
from adbench_dbt.cli import main
from adbench_dbt.errors import EXIT_USAGE, ConfigError, RunError
from test_inpainting_trainer import synthetic_slice

# The official module's interface: Generator(config, use_cuda, device_ids) with the official state-dict names,
# nn.Dropout2d modules that drop only in train mode, forward -> (stage 1, stage 2, flow), and an import from
# `inpainterutils` (resolved inside DIR/inpainter). Here it is the project's generator behind that interface.
FAKE_NETWORKS = """
    import torch
    from inpainterutils.tools import offset
    from adbench_dbt.completion.deepfill import InpaintGenerator, SpatialDropout

    class Generator(InpaintGenerator):
        def __init__(self, config, use_cuda, device_ids):
            super().__init__(config["input_dim"], config["ngf"])
            self.set_dropout(config["droprate"] or 0.0, fine_stage=True)

        def forward(self, x, mask):
            for module in self.modules():
                if isinstance(module, SpatialDropout):
                    module.live = module.training and module.p > 0
            stage1, stage2 = super().forward(x, mask)
            return stage1, stage2 + offset, None
"""


def fake_official(root: Path, offset: float = 0.0, networks: str = FAKE_NETWORKS) -> Path:
    (root / "inpainter" / "model").mkdir(parents=True)
    (root / "inpainter" / "inpainterutils").mkdir(parents=True)
    (root / "inpainter" / "model" / "networks.py").write_text(textwrap.dedent(networks))
    (root / "inpainter" / "inpainterutils" / "tools.py").write_text(f"offset = {offset}\n")
    return root


def test_rows_for_both_generators_and_precisions(tmp_path):
    directory = fake_official(tmp_path / "official")
    rows = bench_against_official(directory, "smoke", {"completions": 2}, synthetic_slice(0, 64, 48), windows=2,
                                  repeats=1, device=torch.device("cpu"))
    names = ["official", "adbench", "adbench channels_last"]
    assert [(r["profile"], r["precision"]) for r in rows] == [
        (f"smoke completions=2 {name}", precision) for precision in ("fp32", "bf16") for name in names]
    assert all(r["method"] == "picard-generator" and r["batch_size"] == 4 and r["windows"] == 2 for r in rows)
    assert all(r["ms_per_patch"] > 0 and r["s_per_slice"] > r["ms_per_patch"] / 1000 for r in rows)
    assert "outputs agree to" in rows[0]["timing"] and all("speedup" in r["timing"] for r in rows[1:3])
    table = merge_bench(tmp_path / "bench.csv", rows)
    assert len(table) == 6 and "picard-generator" in (tmp_path / "bench.md").read_text()
    assert len(pd.read_csv(tmp_path / "bench.csv")) == 6


def test_live_dropout_layers_are_the_same_in_both(tmp_path):
    """With the profile's dropout the fake applies it only where the official code is told to: if the benchmark
    switched on other layers (or none), the seeded outputs would differ and the agreement check would fail."""
    directory = fake_official(tmp_path / "official")
    rows = bench_against_official(directory, "smoke", {"completions": 3, "cnum": 8}, synthetic_slice(1, 64, 48),
                                  windows=1, repeats=1, device=torch.device("cpu"), precisions=("fp32",))
    assert len(rows) == 3


def test_a_generator_computing_something_else_is_refused(tmp_path):
    directory = fake_official(tmp_path / "official", offset=0.5)
    with pytest.raises(RunError, match="differs from the project's by 0.5"):
        bench_against_official(directory, "smoke", {}, synthetic_slice(0, 64, 48), windows=1, repeats=1,
                               device=torch.device("cpu"), precisions=("fp32",))


def test_bad_official_directories_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no inpainter/model/networks.py there"):
        load_official_networks(tmp_path)
    broken = fake_official(tmp_path / "broken", networks="import a_module_that_is_not_installed\n")
    with pytest.raises(ConfigError, match="cannot import the official generator .ModuleNotFoundError"):
        load_official_networks(broken)
    empty = fake_official(tmp_path / "empty", networks="x = 1\n")
    with pytest.raises(ConfigError, match="defines no Generator class"):
        load_official_networks(empty)


def test_cli_reports_a_missing_checkout_before_reading_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["bench", "--method", "picard", "--against-official-picard", str(tmp_path / "nowhere"),
              "--out", str(tmp_path / "bench.csv")])
    err = capsys.readouterr().err
    assert done.value.code == EXIT_USAGE and "nowhere" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bench.csv").exists()
