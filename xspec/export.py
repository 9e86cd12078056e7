"""`xspec export`: one checkpoint of a study as an open_clip-loadable file with a model card.

A checkpoint is chosen either by a checkpoint-selection policy over the study's cleaning runs
(`xspec.reports.policies`: oracle, final, best_accuracy, min_mmcl; the same pick the report's
"Selection policies" table shows) or by naming a node and an epoch. The output folder holds:
- `<name>.pt`: the model's state dict, which `open_clip.create_model_and_transforms(arch,
  pretrained=<file>)` loads (for xspec's own tiny archs, first `open_clip.add_model_config` the
  `<arch>.json` written beside it);
- `<name>.json` and `<name>.md`: the model card (architecture, objectives, attack and trigger,
  poisons, the defence, top-1 and ASR with Wilson 95 % intervals, lineage ids, provenance).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from xspec.errors import XspecError
from xspec.reports.stats import wilson
from xspec.store.workspace import Workspace, atomic_write_bytes


class ExportError(XspecError):
    pass


@dataclass(frozen=True)
class Pick:
    node_id: str
    epoch: int
    how: str  # "policy oracle (ASR <= 5%)", "node clean@... epoch 3"


def _metrics(con, node_id: str, epoch: int) -> dict:
    rows = con.execute("SELECT metric, value, n FROM metrics WHERE node_id = ? AND epoch = ? "
                       "AND split = 'eval'", [node_id, epoch]).fetchall()
    out = {}
    for metric, value, n in rows:
        lo, hi = wilson(value, n) if n else (None, None)
        out[metric] = {"value": value, "n": n, "wilson95": [lo, hi]}
    return out


def by_policy(con, study: str, policy: str, threshold: float,
              pretrain_objective: str | None, clean_objective: str | None) -> Pick:
    from xspec.reports import load
    from xspec.reports.policies import POLICIES, selection_policies

    if policy not in POLICIES:
        raise ExportError(f"--policy: unknown value '{policy}'; allowed: {', '.join(POLICIES)}")
    load.load(con, [study])
    table = selection_policies(con, threshold)
    rows = table[table["policy"] == policy]
    if pretrain_objective is not None:
        rows = rows[rows["pretrain_objective"] == pretrain_objective]
    if clean_objective is not None:
        rows = rows[rows["clean_objective"] == clean_objective]
    if len(rows) != 1:
        pairs = sorted({f"{r.pretrain_objective} / {r.clean_objective}"
                        for r in table.itertuples()})
        raise ExportError(f"policy {policy} picks one model per pre-training / cleaning "
                          f"objective pair; {len(rows)} match: name one with "
                          f"--pretrain-objective and --clean-objective (pairs: "
                          f"{'; '.join(pairs) or 'none: no cleaning run has results yet'})")
    row = rows.iloc[0]
    if row["node_id"] is None or row["node_id"] != row["node_id"]:
        raise ExportError(f"policy {policy} picks no checkpoint for {row['pretrain_objective']}"
                          f" / {row['clean_objective']} (e.g. no epoch reached ASR <= "
                          f"{threshold:g})")
    return Pick(row["node_id"], int(row["epoch"]), f"policy {policy} (ASR threshold "
                f"{threshold:g})" if policy == "oracle" else f"policy {policy}")


def by_node(plan, name: str, epoch: int | None, con) -> Pick:
    nodes = [n for n in plan.nodes.values() if name in (n.name, n.id) or
             (len(name) >= 6 and n.id.startswith(name))]
    if len(nodes) != 1:
        raise ExportError(f"--node '{name}' names {len(nodes)} nodes; give a node name as "
                          "`xspec plan` shows it, or an id prefix of at least 6 characters")
    node = nodes[0]
    if epoch is None:
        found = con.execute("SELECT max(epoch) FROM metrics WHERE node_id = ? AND split = "
                            "'eval'", [node.id]).fetchone()[0]
        if found is None:
            raise ExportError(f"{node.name} has no evaluated epoch yet; run the study first")
        epoch = int(found)
    return Pick(node.id, epoch, f"node {node.name}, epoch {epoch}")


def checkpoint_file(workspace: Workspace, node, epoch: int) -> Path:
    """The weights of `node` at `epoch` (a select node: the pre-training epoch it chose)."""
    run = workspace.run_dir(node)
    selected = run.path / "selected.json"
    if selected.is_file():
        chosen = json.loads(selected.read_text())
        return Path(chosen["checkpoint"])
    path = run.checkpoint(epoch)
    if not path.is_file():
        kept = sorted(int(p.stem.split("_")[1]) for p in run.checkpoints.glob("epoch_*.pt"))
        raise ExportError(f"{node.name}: epoch {epoch}'s weights were not kept (kept: "
                          f"{', '.join(map(str, kept)) or 'none'}); cleaning keeps only its "
                          "final epoch unless [run] keep_checkpoints = \"all\"")
    return path


def lineage(plan, node) -> list[dict]:
    """The node and every node upstream of it, upstream first."""
    seen, order = set(), []

    def visit(n) -> None:
        for dep in n.deps:
            if dep not in seen and dep in plan.nodes:
                seen.add(dep)
                visit(plan.nodes[dep])
        order.append({"kind": n.kind, "name": n.name, "id": n.id})

    visit(node)
    return order


def _arch(node) -> str:
    model = getattr(node.config, "model", None)
    return model.arch if model is not None else next(
        v for k, v in node.lineage.items() if k.endswith("model.arch"))


def _evaluation(node) -> dict:
    """The evaluation settings, from the one lineage key that shows them (`pretrain.eval` on
    a cleaning node of the same study: `xspec.compiler.lineage`)."""
    prefix = node.owners.get("evaluation", f"{node.kind}.eval") + "."
    return {k.removeprefix(prefix): v for k, v in node.lineage.items() if k.startswith(prefix)}


def card(plan, node, pick: Pick, scores: dict, provenance: dict | None) -> dict:
    lin = node.lineage
    attack = {k.split(".", 1)[1]: v for k, v in lin.items() if k.startswith("poison.")
              and not k.startswith("poison.train.") and k != "poison.seed"}
    pretrain = {k.split(".", 1)[1]: v for k, v in lin.items() if k.startswith("pretrain.")
                and k.split(".")[1] in ("objective", "batch_size", "epochs", "lr", "model")}
    defence = None
    if node.kind == "clean":
        defence = {k: v for k, v in node.identity.items()
                   if k not in ("data", "eval", "seed", "plugins")}
    return {
        "format": "xspec model card 1", "study": plan.study, "arch": _arch(node),
        "node": {"kind": node.kind, "name": node.name, "id": node.id}, "epoch": pick.epoch,
        "chosen_by": pick.how, "pretrain": pretrain, "attack": attack or {"kind": "none"},
        "poisons": lin.get("poison.poisons"), "defence": defence, "metrics": scores,
        "evaluation": _evaluation(node),
        "lineage": lineage(plan, node), "provenance": provenance,
    }


def _pct(metric: dict | None) -> str:
    if not metric:
        return "not measured"
    lo, hi = metric["wilson95"]
    interval = "" if lo is None else f" (95 % Wilson interval {100 * lo:.2f}–{100 * hi:.2f} %)"
    return f"{100 * metric['value']:.2f} %{interval}, n = {metric['n']}"


def markdown(data: dict) -> str:
    attack = data["attack"]
    defence = json.dumps(data["defence"], sort_keys=True) if data["defence"] else "none"
    lines = [
        f"# {data['node']['name']} (study {data['study']})", "",
        f"- architecture: `{data['arch']}`; weights of epoch {data['epoch']}, chosen by "
        f"{data['chosen_by']}",
        f"- pre-training: {json.dumps(data['pretrain'], sort_keys=True)}",
        f"- attack: {json.dumps(attack, sort_keys=True)}; poisons: {data['poisons']}",
        f"- defence (cleaning): {defence}",
        f"- zero-shot top-1: {_pct(data['metrics'].get('top1'))}",
        f"- attack success rate: {_pct(data['metrics'].get('asr'))}", "",
        "## Lineage", "",
        *[f"- {n['kind']} `{n['id'][:12]}` {n['name']}" for n in data["lineage"]], "",
        "## Loading", "", "```python", "import open_clip",
        f"model, _, preprocess = open_clip.create_model_and_transforms({data['arch']!r}, "
        f"pretrained='{data['file']}')", "```",
    ]
    if data.get("config_file"):
        lines[-3:-3] = [f"open_clip.add_model_config('{data['config_file']}')  # xspec's arch"]
    prov = data.get("provenance") or {}
    dirty = f" (with uncommitted changes {prov['git_dirty'][:12]})" if prov.get("git_dirty") \
        else ""
    if prov:
        lines += ["", "## Provenance", "",
                  f"xspec {prov.get('xspec_version')}, commit {prov.get('git_commit') or '—'}"
                  f"{dirty}"
                  f", torch {prov.get('torch')}, open_clip {prov.get('open_clip')}, "
                  f"{prov.get('device_count')} × {prov.get('device_name')} on {prov.get('host')}"]
    return "\n".join(lines) + "\n"


def write(workspace: Workspace, plan, pick: Pick, out: Path, scores: dict) -> Path:
    """Write the weights and the card into `out`; returns the weights file."""
    import torch

    node = plan.nodes[pick.node_id]
    source = checkpoint_file(workspace, node, pick.epoch)
    saved = torch.load(source, map_location="cpu", weights_only=True)
    weights = saved.get("model", saved)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{plan.study}-{node.kind}-{node.id[:12]}-epoch{pick.epoch}"
    target = out / f"{stem}.pt"
    import io

    buffer = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in weights.items()}, buffer)
    atomic_write_bytes(target, buffer.getvalue())
    run = workspace.run_dir(node)
    prov = json.loads((run.path / "provenance.json").read_text()) \
        if (run.path / "provenance.json").is_file() else None
    data = card(plan, node, pick, scores, prov)
    data["file"] = str(target)
    bundled = resources.files("xspec.data") / "model_configs" / f"{data['arch']}.json"
    if bundled.is_file():
        config = out / f"{data['arch']}.json"
        shutil.copyfile(str(bundled), config)
        data["config_file"] = str(config)
    atomic_write_bytes(out / f"{stem}.json", (json.dumps(data, indent=2) + "\n").encode())
    atomic_write_bytes(out / f"{stem}.md", markdown(data).encode())
    return target


def export(study, workspace: Workspace, out: Path, policy: str | None = None,
           node: str | None = None, epoch: int | None = None,
           pretrain_objective: str | None = None, clean_objective: str | None = None,
           threshold: float | None = None) -> Path:
    """Ingest the study's runs, pick a checkpoint (a policy, or a node and epoch) and write it."""
    from xspec.reports.load import open_store
    from xspec.study import ingest_study

    if (policy is None) == (node is None):
        raise ExportError("name either --policy or --node")
    ingest_study(study, workspace)
    threshold = study.spec.report.asr_threshold if threshold is None else threshold
    con = open_store(workspace.db_path)
    try:
        pick = by_policy(con, study.plan.study, policy, threshold, pretrain_objective,
                         clean_objective) if policy else by_node(study.plan, node, epoch, con)
        scores = _metrics(con, pick.node_id, pick.epoch)
    finally:
        con.close()
    return write(workspace, study.plan, pick, Path(out), scores)
