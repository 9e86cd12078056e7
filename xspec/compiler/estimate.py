"""What a plan will cost before it is submitted: device-hours per node kind and in total.

Work is counted from each node's config:
  training  pairs x epochs x views (2 with SSL: each image and caption is encoded twice), plus
            a fixed cost per optimiser step (`step_s`: the update of every parameter, the
            49,408-token embedding included, whatever the batch)
  evaluation per evaluation: images (x 2 with ASR: a clean and a triggered copy), the
            zero-shot classifier's captions (classes x templates, encoded again each time),
            each further evaluation set's images, captions, probe and retrieval images; where
            pre-training evaluates after every epoch, cleaning also before the first, and
            shrink-and-perturb once per candidate; deep clustering embeds the cleaning set
            once per epoch
and divided by a per-(architecture, device) rate from `xspec/data/throughput.json` (published
or measured, each with its source; `bench/bench_estimate.py --record` updates it). On the CPU,
the fixed costs `bench/bench_estimate_measured.py` measured are added: each node's process
(interpreter, torch and open_clip imports), a training node's setup (model, data, checkpoints)
and the `xspec run` process itself (planning, claiming, polling). Queueing is not counted.
Pure: it reads only dataset sizes (a CSV's rows).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from importlib import resources

DEFAULT_GPU = "A100"
KNOWN_SIZES = {("fashion_mnist", "train"): 60_000, ("fashion_mnist", "test"): 10_000}
IMAGENET_VAL = 50_000


@dataclass
class KindCost:
    nodes: int = 0
    seconds: float = 0.0
    unknown: list[str] = field(default_factory=list)  # why some nodes have no figure


@dataclass
class Estimate:
    device: str  # a GPU class, or "cpu"
    kinds: dict[str, KindCost]
    sources: dict[str, str]  # arch -> where its rate comes from
    runner: float = 0.0  # seconds of the `xspec run` process itself (CPU estimates)

    @property
    def unit(self) -> str:
        return "CPU-min" if self.device == "cpu" else f"GPU-h ({self.device})"

    def amount(self, seconds: float) -> float:
        return seconds / 60 if self.device == "cpu" else seconds / 3600

    @property
    def total(self) -> float:
        return sum(c.seconds for c in self.kinds.values()) + self.runner

    def as_json(self) -> dict:
        return {"device": self.device, "unit": self.unit, "total": round(self.amount(self.total), 3),
                "complete": not any(c.unknown for c in self.kinds.values()),
                "kinds": {k: {"nodes": c.nodes, "amount": round(self.amount(c.seconds), 3),
                              "unknown": c.unknown} for k, c in self.kinds.items()},
                "runner": round(self.amount(self.runner), 3),
                "sources": self.sources, "derivation": __doc__.split("\n\n")[1].strip()}


@functools.lru_cache(maxsize=1)
def _throughput() -> dict:
    return json.loads(resources.files("xspec").joinpath("data/throughput.json").read_text())


@functools.lru_cache(maxsize=1)
def rates() -> dict[tuple[str, str], dict]:
    return {(r["arch"], r["device"]): r for r in _throughput()["rates"]}


def overheads(device: str) -> dict:
    """Fixed seconds measured on `device` ("cpu"): `process_s` per node process, `setup_s`
    per node kind, `runner_s` + `runner_per_node_s` for the `xspec run` process; {} if none."""
    return _throughput().get("overheads", {}).get(device, {})


def estimate(plan, gpu: str = DEFAULT_GPU, device: str = "auto",
             threads: int | None = None) -> Estimate:
    """`device` is the spec's run.device: "cpu" counts CPU time; otherwise a tiny
    architecture with only a CPU rate counts on CPU too. `threads` is run.threads: CPU rates
    are for one thread; with more (or torch's default), a rate's `multi_thread` figures count
    (threads that wait for each other burn CPU time)."""
    archs = {_arch(n) for n in plan.nodes.values()} - {None}
    on_cpu = device == "cpu" or (archs and all((a, gpu) not in rates() for a in archs)
                                 and any((a, "cpu") in rates() for a in archs))
    where = "cpu" if on_cpu else gpu
    result = Estimate(where, {}, {a: rates()[(a, where)]["source"] for a in sorted(archs)
                                  if (a, where) in rates()})
    expected = _expected_sizes(plan)
    fixed = overheads(where)
    result.runner = fixed.get("runner_s", 0.0) + fixed.get("runner_per_node_s", 0.0) * len(
        plan.nodes) if plan.nodes else 0.0
    for node in plan.ordered():
        cost = result.kinds.setdefault(node.kind, KindCost())
        cost.nodes += 1
        try:
            cost.seconds += _seconds(node, where, expected, threads, archs) + _fixed(
                node.kind, fixed)
        except _Unknown as exc:
            if str(exc) not in cost.unknown:
                cost.unknown.append(str(exc))
    return result


class _Unknown(Exception):
    pass


def _expected_sizes(plan) -> dict[str, int]:
    """`expected_size` of every dataset this plan or the studies it takes inputs from name."""
    sizes: dict[str, int] = {}
    for upstream in getattr(plan, "upstream", {}).values():
        sizes.update(_expected_sizes(upstream))
    sizes.update(getattr(plan, "expected_sizes", {}))
    return sizes


def _arch(node) -> str | None:
    """The architecture a node trains or runs (pseudo_labels: its input's)."""
    if "pretrain.model.arch" in node.lineage:
        return node.lineage["pretrain.model.arch"]
    return next((v for k, v in node.lineage.items() if k.endswith(".arch")), None)


def _rate(node, where: str, threads: int | None = None, archs=()) -> dict:
    """The node's rate; a node without an architecture of its own (BadCLIP's trigger, which
    runs another study's model) counts at the plan's one architecture."""
    arch = _arch(node) or (next(iter(archs)) if len(archs) == 1 else None)
    if (arch, where) not in rates():
        known = sorted(a for a, d in rates() if d == where)
        raise _Unknown(f"no {where} rate for {arch} (known: {', '.join(known)})")
    rate = rates()[(arch, where)]
    return {**rate, **rate["multi_thread"]} if threads != 1 and "multi_thread" in rate else rate


def _fixed(kind: str, fixed: dict) -> float:
    """A node's fixed seconds: its process, and its kind's setup."""
    return fixed.get("process_s", 0.0) + fixed.get("setup_s", {}).get(kind, 0.0)


def _seconds(node, where: str, expected: dict[str, int], threads: int | None = None,
             archs=()) -> float:
    config = node.identity
    if node.kind in ("poison", "select"):
        return 0.0  # a manifest of indices; a pick among recorded metrics
    if node.kind not in ("pretrain", "clean", "shrink_perturb", "pseudo_labels", "detect",
                         "badclip_trigger", "decree"):
        raise _Unknown(f"no estimate for {node.kind} nodes")
    rate = _rate(node, where, threads, archs)
    if node.kind == "decree":  # a trigger optimised on `shadow` images of one model (not measured)
        return (config["shadow"] * config["epochs"] / rate["train_per_s"]
                + _pairs(config["source"], expected) / rate["eval_per_s"])
    if node.kind == "badclip_trigger":  # the patch through the surrogate, its pool embedded once
        return (config["images"] * config["epochs"] / rate["train_per_s"]
                + _pairs(config["train"], expected) / rate["eval_per_s"])
    if node.kind == "pseudo_labels":  # one pass over the cleaning set's images
        return config["data"]["size"] / rate["eval_per_s"]
    if node.kind == "detect":  # one pass over the training pairs; CD optimises a mask per image
        pairs = _pairs(config["train"], expected)
        steps = config["detectors"].get("cognitive_distillation", {}).get("steps", 0)
        return pairs / rate["eval_per_s"] + pairs * steps / rate["train_per_s"]
    evaluation = _evaluation_seconds(config["eval"], rate, expected)
    if node.kind == "shrink_perturb":
        return evaluation * len(config["shrink"]) * len(config["perturb"])
    views = 2 if "ssl" in config["objective"].split("+") else 1
    if node.kind == "pretrain":
        pairs, passes = _pairs(config["train"], expected), config["epochs"]
    else:
        pairs, passes = config["data"]["size"], config["epochs"] + 1
    steps = config["epochs"] * -(-pairs // max(1, config.get("batch_size") or pairs))
    seconds = pairs * config["epochs"] * views / rate["train_per_s"]
    seconds += steps * rate.get("step_s", 0.0) + evaluation * passes
    if "deep_cluster" in config:
        seconds += pairs * config["epochs"] / rate["eval_per_s"]
    return seconds


def _evaluation_seconds(eval_config: dict, rate: dict, expected: dict[str, int]) -> float:
    """One evaluation: the primary set, then every further set, probe and retrieval set."""
    triggered = "asr" in eval_config["metrics"]
    seconds = _set_seconds(eval_config, rate, expected, triggered)
    for other in (eval_config.get("sets") or {}).values():
        seconds += _set_seconds({"templates": "clip80", **other}, rate, expected, triggered)
        if other.get("probe"):  # the probe's training images are embedded each evaluation
            seconds += _pairs(other["probe"]["train"], expected) / rate["eval_per_s"]
    for retrieval in (eval_config.get("retrieval") or {}).values():
        images = _pairs(retrieval["source"], expected)
        seconds += images / rate["eval_per_s"] + images / rate.get("caption_per_s", float("inf"))
    return seconds


def _set_seconds(set_config: dict, rate: dict, expected: dict[str, int],
                 triggered: bool) -> float:
    source = set_config["source"]
    images = source.get("size") or _size(source, expected)
    captions = _classes(set_config) * _templates(set_config.get("templates", "clip80"))
    return (images * (2 if triggered else 1) / rate["eval_per_s"]
            + captions / rate.get("caption_per_s", float("inf")))


def _classes(set_config: dict) -> int:
    """How many class names the zero-shot classifier encodes (0 where unknown here)."""
    if set_config.get("subset"):
        return len(set_config["subset"])
    source = set_config["source"]
    if isinstance(source.get("classes"), list):
        return len(source["classes"])
    if source.get("classes") == "imagenet1k":
        return 1000
    return 10 if source["format"] == "fashion_mnist" else 0


def _templates(templates) -> int:
    return 80 if templates == "clip80" else len(templates) if isinstance(templates, list) else 1


def _pairs(source: dict, expected: dict[str, int]) -> int:
    return source.get("size") or _size(source, expected)


def _size(source: dict, expected: dict[str, int]) -> int:
    fmt = source["format"]
    if (fmt, source.get("split")) in KNOWN_SIZES:
        return KNOWN_SIZES[(fmt, source.get("split"))]
    if fmt in ("csv", "labels_csv"):
        rows = _csv_rows(source["path"])
        if rows is None and fmt == "labels_csv" and source.get("classes") == "imagenet1k":
            return IMAGENET_VAL
        if rows is None and source["path"] in expected:
            return expected[source["path"]]
        if rows is None:
            raise _Unknown(f"{source['path']} is not readable here: give its expected_size = N")
        return rows
    if fmt == "webdataset":
        from xspec.tarindex import declared_size, shard_paths

        declared = declared_size(shard_paths(source["path"]))
        if declared is None and source["path"] in expected:
            return expected[source["path"]]
        if declared is None:
            raise _Unknown(f"{source['path']}: shards without sizes.json or _stats.json: "
                           "give its expected_size = N")
        return declared
    if fmt == "imagefolder" and source.get("classes") == "imagenet1k":
        return IMAGENET_VAL
    raise _Unknown(f"size of {source.get('path', fmt)} unknown: give its expected_size = N")


@functools.lru_cache(maxsize=64)
def _csv_rows(path: str) -> int | None:
    try:
        with open(path, "rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return None
    return max(lines - 1, 0)  # the header


def record_rate(arch: str, device: str, train_per_s: float, eval_per_s: float,
                source: str, path: str | None = None) -> str:
    """Add or replace one rate in throughput.json (for bench/); returns the file written."""
    target = path or str(resources.files("xspec").joinpath("data/throughput.json"))
    with open(target) as handle:
        data = json.load(handle)
    kept = [r for r in data["rates"] if (r["arch"], r["device"]) == (arch, device)]
    data["rates"] = [r for r in data["rates"] if (r["arch"], r["device"]) != (arch, device)]
    data["rates"].append({**(kept[0] if kept else {}), "arch": arch, "device": device,
                          "train_per_s": round(train_per_s), "eval_per_s": round(eval_per_s),
                          "source": source})
    tmp = f"{target}.tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, target)
    _throughput.cache_clear()
    rates.cache_clear()
    return target
