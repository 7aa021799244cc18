"""``headstart models list|show``: the model zoo."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="List and inspect the model zoo.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("list")
def list_models(
    pattern: Annotated[
        str | None,
        typer.Argument(
            help="Shell-style pattern, e.g. 'tv:*' or '*convnext*'.", show_default=False
        ),
    ] = None,
) -> None:
    """List model names (bundled:, tv: or torchvision:, timm:).

    Example: headstart models list 'tv:resnet*'
    """
    from headstart.cli.console import out
    from headstart.zoo import list_backbones
    from headstart.zoo.registry import BARE_ORDER

    names = list_backbones(pattern)
    for name in names:
        out.print(name)
    out.print(
        f"{len(names)} models; a name without a source tries {', then '.join(BARE_ORDER)} "
        "(`headstart models show NAME` says which it is); hf-hub:<owner>/<repo> names a timm "
        "model on the Hugging Face hub",
        style="dim",
    )


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Model name.", show_default=False)]) -> None:
    """Show a model's preprocessing, classifier, feature width and stages.

    Example: headstart models show bundled:efficientnet_lite0
    """
    from headstart.cli.console import out
    from headstart.zoo import create_backbone, resolve_name

    # bundled weights ship with headstart, so their class names can be shown without a download
    model, spec = create_backbone(name, pretrained=resolve_name(name).startswith("bundled:"))
    pre = spec.preprocessing
    params = sum(p.numel() for p in model.parameters())
    rows = [
        ("name", spec.name),
        ("source", spec.source),
        ("architecture", spec.arch),
        ("parameters", f"{params / 1e6:.2f} M"),
        ("input size", f"{pre.input_size} px"),
        ("resize", f"{pre.resize_size} px (crop fraction {pre.crop_pct})"),
        ("interpolation", pre.interpolation),
        ("mean", ", ".join(f"{v:.4f}" for v in pre.mean)),
        ("std", ", ".join(f"{v:.4f}" for v in pre.std)),
        ("classifier", f"{spec.classifier} ({spec.num_features} features)"),
        ("stages", f"{spec.num_stages} (for --unfreeze-stages 0..{spec.num_stages})"),
        ("pretrained classes", str(len(spec.categories)) if spec.categories else "not loaded"),
        ("weights licence", spec.license),
    ]
    if ":" not in name:
        rows.insert(1, ("bare name", _bare_line(name)))
    for key, value in rows:
        out.print(f"{key:>20}  {value}")


def _bare_line(name: str) -> str:
    """What a name without ``source:`` resolves to, and what else it could have meant."""
    from headstart.zoo.registry import BARE_ORDER, bare_matches

    first, *others = bare_matches(name)
    line = f"{name.strip()} is {first} (tried: {', then '.join(BARE_ORDER)})"
    return line + (f"; also {', '.join(others)}" if others else "")
