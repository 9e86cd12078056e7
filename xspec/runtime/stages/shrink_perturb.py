"""The shrink_perturb node: the selected checkpoint shrunk and perturbed; the most accurate
candidate under the ASR bar is handed on (selected.json)."""

from __future__ import annotations


import torch

from xspec.errors import DataError
from xspec.runtime import models
from xspec.runtime.ablations import perturbed
from xspec.runtime.evaluator import Evaluator
from xspec.runtime.handoffs import open_model, upstream_attack
from xspec.runtime.node import Context
from xspec.runtime.records import MetricsLog, save_checkpoint
from xspec.runtime.seeding import set_seed


def shrink_perturb(ctx: Context) -> None:
    """Evaluate every (shrink, perturb) candidate; keep the most accurate one under the ASR bar."""
    cfg = ctx.cfg  # ShrinkPerturbConfig
    set_seed(cfg.seed)
    selected = ctx.first_dep().read_selected()
    model, tokenizer, normalize, size = open_model(selected["arch"], {"path": selected["checkpoint"]},
                                               ctx)
    evaluator = Evaluator(cfg.eval.model_dump(), upstream_attack(ctx), tokenizer,
                          normalize, size, ctx.device, ctx.settings)
    start = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    parameters = {name for name, _ in model.named_parameters()}
    fresh = None
    if cfg.noise == "init":
        torch.manual_seed(cfg.seed)
        fresh = models.create(selected["arch"], "scratch", torch.device("cpu")).state_dict()
    metrics = MetricsLog(ctx.run.metrics_file, ctx.node["id"])
    metrics.rows, candidates = [], []
    for shrink in cfg.shrink:
        for sigma in cfg.perturb:
            model.load_state_dict(perturbed(start, parameters, shrink, sigma, cfg.noise, fresh,
                                              cfg.seed))
            if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                ctx.log(f"shrink {shrink} perturb {sigma}: parameters overflowed; not a candidate")
                continue
            scores = evaluator(model)
            candidates.append({"shrink": shrink, "perturb": sigma,
                               **{k: v[0] for k, v in scores.items()}})
            for name, (value, n) in scores.items():
                metrics.add(0, "candidate", name, value, n, step=len(candidates) - 1)
            ctx.log(f"shrink {shrink} perturb {sigma}: " +
                    ", ".join(f"{k} {v[0]:.3f}" for k, v in scores.items()))
    if not candidates:
        raise DataError("shrink_perturb: every (shrink, perturb) candidate overflowed; "
                        "lower clean.shrink_perturb.perturb")
    eligible = [c for c in candidates if c.get("asr", 0.0) <= cfg.asr_threshold]
    best = max(eligible or candidates, key=lambda c: (c["top1"], -c.get("asr", 0.0)))
    chosen = candidates.index(best)
    model.load_state_dict(perturbed(start, parameters, best["shrink"], best["perturb"],
                                    cfg.noise, fresh, cfg.seed))
    save_checkpoint(ctx.run.checkpoint(0), {"model": model.state_dict(), "epoch": 0,
                                            "node_id": ctx.node["id"],
                                            "activation": models.activation(model)})
    for row in [r for r in metrics.rows if r["step"] == chosen]:
        metrics.add(0, "eval", row["metric"], row["value"], row["n"], 0)
    metrics.flush()
    ctx.run.write_selected({
        **selected, "checkpoint": str(ctx.run.checkpoint(0)), "candidate": best,
        "under_threshold": bool(eligible)})
    ctx.log(f"chose shrink {best['shrink']} perturb {best['perturb']}"
            + ("" if eligible else " (no candidate reached the ASR threshold)"))
