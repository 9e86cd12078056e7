"""`xspec export`: a chosen checkpoint as an open_clip-loadable file with a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from xspec.cli_views import SafeConsole, styled

Opt = typer.Option


def export(
    spec: Annotated[Path, typer.Argument(help="The study's TOML spec.", show_default=False)],
    out: Annotated[Path, Opt("--out", "-o", help="Folder for the weights and the card.")],
    policy: Annotated[Optional[str], Opt(
        help="Pick the cleaned model a selection policy keeps: oracle, final, best_accuracy, "
             "min_mmcl.")] = None,
    node: Annotated[Optional[str], Opt(
        help="Or a node: its name as `xspec plan` shows it, or an id prefix.")] = None,
    epoch: Annotated[Optional[int], Opt(help="With --node: the epoch (default: its last "
                                             "evaluated one).")] = None,
    pretrain_objective: Annotated[Optional[str], Opt(
        help="With --policy: the pre-training objective of the runs to pick among.")] = None,
    clean_objective: Annotated[Optional[str], Opt(
        help="With --policy: the cleaning objective of the runs to pick among.")] = None,
    asr_threshold: Annotated[Optional[float], Opt(
        help="The oracle policy's ASR threshold (default: the spec's report.asr_threshold).")
    ] = None,
    workspace: Annotated[Path, Opt("--workspace", "-w", envvar="XSPEC_WORKSPACE",
                                   help="Where runs, results and reports live.")
                         ] = Path("xspec-work"),
) -> None:
    """Write one checkpoint as an open_clip-loadable file plus a model card (JSON and Markdown):
    arch, objectives, attack and trigger, poisons, defence, top-1 and ASR with intervals,
    lineage ids, provenance.

    Example: xspec export specs/table2.toml --policy oracle --pretrain-objective mmcl+ssl
    --clean-objective mmcl+ssl --out released/
    """
    from xspec.export import export as run_export
    from xspec.store.workspace import Workspace
    from xspec.study import open_study

    path = run_export(open_study(spec), Workspace(workspace), out, policy, node, epoch,
                      pretrain_objective, clean_objective, asr_threshold)
    SafeConsole(highlight=False).print(styled("exported:", "", f"{path} (card: "
                                               f"{path.with_suffix('.md')})"))
