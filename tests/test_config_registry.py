"""Profiles, validated overrides, the registry, and third-party methods through entry points."""
import sys
import textwrap

import pytest

from adbench_dbt import registry
from adbench_dbt.config import ConfigError, parse_overrides
from adbench_dbt.registry import available_methods, create_method, get_method, register_method


def test_overrides_are_parsed_as_yaml_scalars():
    assert parse_overrides(["stride=64", "assembly=averaged", "skip_background=true", "lr=1e-4"]) == {
        "stride": 64, "assembly": "averaged", "skip_background": True, "lr": 1e-4}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["stride"])


def test_override_validation_names_the_key():
    with pytest.raises(ConfigError, match="method 'telea', profile 'smoke': strde: Extra inputs"):
        create_method("telea", "smoke", {"strde": 4})
    with pytest.raises(ConfigError, match="stride: Input should be a valid integer"):
        create_method("telea", "smoke", {"stride": "wide"})
    with pytest.raises(ConfigError, match="assembly: Input should be"):
        create_method("telea", "smoke", {"assembly": "bilinear"})
    with pytest.raises(ConfigError, match="no profile 'huge'"):
        create_method("telea", "huge")
    assert create_method("telea", "smoke", {"stride": 8}).config.stride == 8


def test_every_builtin_has_the_three_profiles_and_a_readme():
    from pathlib import Path
    import inspect

    for name, cls in available_methods().items():
        assert {"paper", "demo", "smoke"} <= set(cls.profiles()), name
        for profile in ("paper", "demo", "smoke"):
            cls.from_profile(profile)  # every profile validates
        assert Path(inspect.getfile(cls)).with_name("README.md").exists(), name


def test_unknown_method_lists_available():
    with pytest.raises(ConfigError, match="unknown method 'nope'; available: .*telea"):
        get_method("nope")


def test_register_rejects_non_methods_and_name_clashes():
    with pytest.raises(TypeError):
        register_method(int)
    telea = get_method("telea")

    class Other(telea):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_method(Other)


def test_a_same_named_class_elsewhere_cannot_shadow_a_builtin(monkeypatch):
    """The bug: a plug-in class called `Telea` (same __qualname__ as the built-in) used to replace it silently."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    builtin = get_method("telea")
    impostor = type(builtin.__name__, (builtin,), {"__module__": "someone_elses_plugin"})
    with pytest.raises(ValueError) as err:
        register_method(impostor)
    message = str(err.value)
    assert f"{builtin.__module__}.{builtin.__qualname__}" in message and "someone_elses_plugin.Telea" in message
    assert get_method("telea") is builtin
    assert register_method(replace=True)(impostor) is impostor  # explicit opt-in replaces
    assert get_method("telea") is impostor


def test_entry_point_plugin_is_discovered(tmp_path, monkeypatch):
    pkg = tmp_path / "adb_plugin_example.py"
    pkg.write_text(textwrap.dedent('''
        import torch
        from adbench_dbt.method import WindowMethod

        class Brightness(WindowMethod):
            """Scores a window by its mean intensity."""
            name = "plugin-brightness"
            variants = ("mean",)
            def fit(self, train, val=None):
                pass
            def score_windows(self, windows):
                return {"mean": windows.mean(dim=(1, 2, 3))}
    '''))
    dist = tmp_path / "adb_plugin_example-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: adb-plugin-example\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[adbench_dbt.methods]\nplugin-brightness = adb_plugin_example:Brightness\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert "plugin-brightness" in available_methods()
    assert get_method("plugin-brightness").__name__ == "Brightness"
    sys.modules.pop("adb_plugin_example", None)
