"""`[clean] l2_weight`: lambda * ||theta - theta_0||^2 over all trainable parameters, pulling
cleaning toward the weights it started from (Zhu et al. 2023; the paper's Figure 8).

The whole defence in one file: the spec field (type, "off" default, description) and the loss
term, which runs in the clean node (torch is imported there, never by the compiler)."""

from __future__ import annotations

from typing import Annotated

from xspec.extend import NonNegativeFloat, PerMember, Pieces, Term, register_defence


def build(weight: float, setup) -> Pieces:
    if setup.start_parameters is not None:
        start = setup.start_parameters()
    else:
        start = {n: p.detach().clone() for n, p in setup.model.named_parameters()
                 if p.requires_grad}

    def penalty(model, batch, features):
        return sum(((p - start[n]) ** 2).sum() for n, p in model.named_parameters()
                   if p.requires_grad)

    return Pieces(terms=[Term("l2_to_start", weight, penalty)])


register_defence("l2_weight", build, annotation=Annotated[NonNegativeFloat, PerMember], default=0.0,
                 description="lambda in lambda * ||theta - theta_0||^2 toward the starting "
                             "weights (Zhu et al.).")
