"""Rain preset versions are frozen data: editing an old version fails here; a change is a new version."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from tmics_cli.data.rain import (
    CARD_ALIASES,
    PRESET_ALIASES,
    PRESET_VERSIONS,
    PRESETS,
    STYLE_RANGES,
    RainLayer,
    RainPreset,
    RainStyle,
    add_rain,
    sample_style,
)

# sha256 of each version's fields (json, sorted keys), first 16 hex digits. Never edit a line here: add a
# new version (and its line) instead.
FROZEN = {
    "light-v1": "60c986635e85f61f",
    "light-v2": "f68727225c422a33",
    "light-v3": "dcb77892117e2742",
    "light-v4": "71663f360d94935e",
    "light-v5": "e67abc96b69b254e",
    "light-v6": "429078147d500bac",
    "light-v7": "78643e9bbab19330",
    "light-v8": "e733c00b84232ae5",
    "light-v9": "5670c665a9ba7407",
    "heavy-v1": "586bff8654529f40",
    "heavy-v2": "663d2ee56d845c14",
    "drizzle-v1": "30c7befb609cc477",
    "dense-drizzle-v1": "ee405e57e1942684",
    "near-v1": "2da44c2b108b47f2",
}


def _digest(preset: RainPreset) -> str:
    text = json.dumps(dataclasses.asdict(preset), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("version", sorted(FROZEN))
def test_version_is_frozen(version):
    assert _digest(PRESET_VERSIONS[version]) == FROZEN[version], f"{version} changed: add a new version"


def test_every_version_is_frozen_in_this_test():
    assert set(PRESET_VERSIONS) == set(FROZEN)


def test_versions_cannot_be_edited_in_place():
    with pytest.raises(TypeError):
        PRESET_VERSIONS["light-v1"] = PRESET_VERSIONS["light-v9"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESET_VERSIONS["light-v1"].density_scale = (0.0, 1.0)  # type: ignore[misc]


def test_aliases_are_the_newest_versions():
    assert dict(PRESET_ALIASES) == {"light": "light-v9", "heavy": "heavy-v2"}
    for alias, version in PRESET_ALIASES.items():
        family = [int(v.rsplit("-v", 1)[1]) for v in PRESET_VERSIONS if v.rsplit("-v", 1)[0] == alias]
        assert version == f"{alias}-v{max(family)}"
        assert PRESETS[alias] is PRESET_VERSIONS[version]
    assert all(PRESETS[v] is p for v, p in PRESET_VERSIONS.items())
    assert all(PRESETS[card] is PRESET_VERSIONS[v] for card, v in CARD_ALIASES.items())


# The presets each version came from, as literals: `light` and `heavy` as they stood before versions
# existed, and the model card's frozen CARD_PRESETS (benchmarks/model_card_eval.py until then).
_CARD_LIGHT = RainPreset(
    styles=("streaks", "fine", "slanted"), density_scale=(0.25, 0.8), h264_probability=0.3, haze_scale=0.0
)
ORIGINS = {
    "light-v9": RainPreset(
        styles=("streaks", "drizzle", "dense-drizzle", "fine", "slanted"),
        density_scale=(0.25, 0.8),
        h264_probability=0.3,
        h264_crf=(14, 23),
        haze_scale=0.0,
        near_probability=0.5,
        haze_probability=0.25,
    ),
    "heavy-v2": RainPreset(
        styles=("streaks", "fine", "slanted", "dense", "hazy"), density_scale=(0.8, 1.8), h264_probability=0.3
    ),
    "light-v3": _CARD_LIGHT,
    "light-v2": dataclasses.replace(_CARD_LIGHT, haze_scale=1.0),
    "drizzle-v1": dataclasses.replace(_CARD_LIGHT, styles=("drizzle",)),
    "dense-drizzle-v1": dataclasses.replace(_CARD_LIGHT, styles=("dense-drizzle",)),
    "near-v1": dataclasses.replace(_CARD_LIGHT, near_probability=1.0),
}


def _render(preset, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    base = np.random.default_rng(5).uniform(0.1, 0.7, (40, 48, 3)).astype(np.float32)
    rng = np.random.default_rng(seed)
    style = sample_style(preset, rng)
    return add_rain([base.copy() for _ in range(3)], style, rng)


def test_card_names_are_the_card_presets():
    assert {ORIGINS[v] for v in CARD_ALIASES.values()} == {PRESETS[card] for card in CARD_ALIASES}
    assert PRESETS["card-light"] == _CARD_LIGHT and PRESETS["card-near"] == ORIGINS["near-v1"]


@pytest.mark.parametrize("version", sorted(ORIGINS))
def test_version_renders_bit_identically_to_its_origin(version):
    assert PRESET_VERSIONS[version] == ORIGINS[version]
    for seed in (3, 11):
        rainy, clean = _render(version, seed)
        rainy0, clean0 = _render(ORIGINS[version], seed)
        assert all(np.array_equal(a, b) for a, b in zip(rainy + clean, rainy0 + clean0, strict=True))


def test_alias_renders_as_its_version():
    for seed in (0, 7):
        a, _ = _render("light", seed)
        b, _ = _render("light-v9", seed)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_every_named_style_has_its_ranges():
    assert {style for preset in PRESETS.values() for style in preset.styles} <= set(STYLE_RANGES)
    with pytest.raises(TypeError):
        STYLE_RANGES["hazy"] = STYLE_RANGES["fine"]  # type: ignore[index]
    with pytest.raises(ValueError, match="unknown rain style"):
        sample_style(RainPreset(styles=("drizle",), density_scale=(0.5, 1.5)), np.random.default_rng(0))


def test_style_drawn_as_before_the_ranges_were_data():
    # drawn by the if/elif sample_style had before STYLE_RANGES (11b4ad0): the sign (here -1) is drawn
    # before the angle's magnitude, and the first layer's constant width draws nothing
    style = sample_style(RainPreset(styles=("slanted",), density_scale=(0.5, 1.5)), np.random.default_rng(2))
    assert style == RainStyle(
        angle=-35.35564351485701,
        angle_spread=2.3676637685403876,
        layers=(
            RainLayer(0.006092897073994531, 10.800804207725232, 0.0, 0.3821401317029487),
            RainLayer(0.0022848364027479493, 18.758021467332068, 0.05514662733306819, 0.38249081037181143),
        ),
        haze=0.09861495223133888,
        airlight=0.7375155658263339,
        jpeg_quality=67,
        chroma_420=True,
        noise=0.006692972985745203,
    )
