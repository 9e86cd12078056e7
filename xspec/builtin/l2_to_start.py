"""`[clean] l2_weight`: lambda * ||theta - theta_0||^2 over all trainable parameters, pulling
cleaning toward the weights it started from (Zhu et al. 2023; the paper's Figure 8).

The whole defence in one file: the spec field (type, "off" default, description) and the loss
term, which runs in the clean node (torch is imported there, never by the compiler)."""

from __future__ import annotations

from xspec.extend import NonNegativeFloat, Pieces, Term, register_defence


def build(weight: float, setup) -> Pieces:
    start = [p.detach().clone() for p in setup.model.parameters() if p.requires_grad]

    def penalty(model, batch, features):
        params = [p for p in model.parameters() if p.requires_grad]
        return sum(((p - p0) ** 2).sum() for p, p0 in zip(params, start))

    return Pieces(terms=[Term("l2_to_start", weight, penalty)])


register_defence("l2_weight", build, annotation=NonNegativeFloat, default=0.0,
                 description="lambda in lambda * ||theta - theta_0||^2 toward the starting "
                             "weights (Zhu et al.).")
