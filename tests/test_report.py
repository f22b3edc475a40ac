"""`adbench report` as a user meets it: generated from small runs, parsed (every image it references exists, every
method row present, no network resource), and rendered in headless Chromium where it is installed."""
from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from adbench_dbt.cli import main
from adbench_dbt.runner import RunSpec, run

METHODS = ("telea", "random")


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.methods: list[str] = []
        self.tables: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag in ("link", "script") and (attrs.get("href") or attrs.get("src")):
            self.links.append(attrs.get("href") or attrs.get("src"))
        if tag == "tr" and "data-method" in attrs:
            self.methods.append(attrs["data-method"])
        if tag == "table" and "id" in attrs:
            self.tables.append(attrs["id"])


@pytest.fixture(scope="module")
def report(tmp_path_factory, cache_root):
    out = tmp_path_factory.mktemp("report")
    for method in METHODS:
        run(RunSpec(method=method, profile="smoke", dataset="phantom:tiny", device="cpu", out=str(out / "runs"),
                    cache=str(cache_root), overlays=False))
    with pytest.raises(SystemExit) as done:
        main(["report", "--runs", str(out / "runs"), "--dataset", "phantom-tiny", "--out", str(out / "site")])
    assert done.value.code == 0
    return out / "site" / "index.html"


def test_page_is_complete_and_self_contained(report, tiny_dataset):
    page = Page()
    page.feed(report.read_text())
    assert sorted(set(page.methods)) == sorted(METHODS)
    assert {"leaderboard", "gallery"} <= set(page.tables)
    assert page.links == [] and "http://" not in report.read_text() and "https://" not in report.read_text()
    assert page.images, "no figures"
    for src in page.images:
        assert not src.startswith(("/", "http")) and (report.parent / src).is_file(), src
    for figure in ("roc", "pr", "froc", "slice_auroc", "speed"):
        assert f"figures/{figure}.png" in page.images
    slices = tiny_dataset.split("test")
    assert sum(1 for src in page.images if src.startswith("gallery/")) == len(slices) * (1 + len(METHODS))


def test_renders_in_headless_chromium(report, tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium); the page was checked by parsing only")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1366,900", f"--screenshot={shot}", report.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (900, 1366)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01, "the screenshot is blank"
