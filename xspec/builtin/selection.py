"""The built-in checkpoint-selection policies, one definition each for the runtime (a select
node: `pretrain.select`) and the report (the selection-policy table of cleaned models); see
`xspec.extend.selection`. Each gets the run's evaluated epochs (`rows`, oldest first), its
argument and the `SelectionContext`, and returns an epoch (None: no pick).

- best_accuracy: the most accurate epoch (earliest on ties); pretrain and clean;
- final: the last evaluated epoch; pretrain and clean;
- epoch(N): epoch N; pretrain;
- match_accuracy(<objective>): the epoch whose top-1 is closest to that run's selected one;
  pretrain;
- oracle: the most accurate epoch with ASR <= the report's threshold (needs the ASR, which a
  defender does not know; the paper's Table 2 reports this one); clean;
- min_mmcl: the epoch with the lowest MMCL loss on held-out clean pairs (training MMCL where a
  run logged none; the report's label says which); runs compare by that loss; clean.
"""

from __future__ import annotations

from xspec.extend import register_policy


def best_accuracy(rows, arg, ctx) -> int:
    return max(rows, key=lambda r: (r["top1"], -r["epoch"]))["epoch"]


def final(rows, arg, ctx) -> int:
    return max(r["epoch"] for r in rows)


def epoch(rows, arg: str, ctx) -> int:
    return int(arg)


def match_accuracy(rows, arg, ctx) -> int:
    """The epoch whose accuracy is closest to the reference run's selected accuracy."""
    from xspec.runtime.records import MetricsLog

    reference = MetricsLog(ctx.dep("select").metrics_file, "").rows
    target = next(r["value"] for r in reference if (r["split"], r["metric"]) == ("eval", "top1"))
    return min(rows, key=lambda r: (abs(r["top1"] - target), r["epoch"]))["epoch"]


def oracle(rows, arg, ctx) -> int | None:
    under = [r for r in rows if r["asr"] <= ctx.asr_threshold]
    return min(under, key=lambda r: (-r["top1"], r["asr"], r["epoch"]))["epoch"] if under else None


def min_mmcl(rows, arg, ctx) -> int:
    return min(rows, key=lambda r: (r["mmcl"], r["epoch"]))["epoch"]


register_policy("oracle", oracle, scope=("clean",), needs=("top1", "asr"),
                label="oracle: best top-1 with ASR ≤ {threshold}")
register_policy("final", final, scope=("pretrain", "clean"), label="final epoch")
register_policy("best_accuracy", best_accuracy, scope=("pretrain", "clean"),
                label="best top-1, ASR unknown")
register_policy("min_mmcl", min_mmcl, scope=("clean",), needs=("mmcl",), better="min:mmcl",
                label="lowest {mmcl_source} MMCL loss")
register_policy("epoch", epoch, arg="int", needs=())
register_policy("match_accuracy", match_accuracy, arg="objective")
