"""``headstart models``: which source a bare name resolves to, and the new names."""

from __future__ import annotations

from tests.e2e_helpers import run_cli as run


def test_show_says_where_a_bare_name_goes() -> None:
    code, out, err = run(["models", "show", "resnet18"])
    assert code == 0, err
    assert "tv:resnet18.IMAGENET1K_V1" in out and "also timm:resnet18" in out
    assert "bundled, then tv, then timm" in out
    code, out, _ = run(["models", "show", "tv:resnet18"])
    assert code == 0 and "bare name" not in out


def test_list_takes_the_torchvision_alias_and_names_the_order() -> None:
    code, out, err = run(["models", "list", "torchvision:swin_v2*"])
    assert code == 0, err
    assert "tv:swin_v2_t.IMAGENET1K_V1" in out and "bundled, then tv, then timm" in out
    code, out, err = run(["models", "show", "torchvision:regnet_y_400mf"])
    assert code == 0, err
    assert "tv:regnet_y_400mf.IMAGENET1K_V2" in out and "5 (for --unfreeze-stages" in out


def test_unknown_torchvision_name_suggests_the_new_families() -> None:
    code, _, err = run(["models", "show", "tv:vit_b16"])
    assert code == 2 and "Did you mean: tv:vit_b_16" in err and "vgg" not in err
