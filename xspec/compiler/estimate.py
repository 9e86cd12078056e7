"""What a plan will cost before it is submitted: device-hours per node kind and in total.

Work is counted from each node's config:
  training  pairs x epochs x views (2 with SSL: each image and caption is encoded twice)
  evaluation images x evaluations (x 2 with ASR: a clean and a triggered copy), where
            pre-training evaluates after every epoch, cleaning also before the first, and
            shrink-and-perturb once per candidate; deep clustering embeds the cleaning set
            once per epoch.
and divided by a per-(architecture, device) rate from `xspec/data/throughput.json` (published
or measured, each with its source; `bench/bench_estimate.py --record` updates it). Data loading,
checkpointing and queueing are not counted. Pure: it reads only dataset sizes (a CSV's rows).
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

    @property
    def unit(self) -> str:
        return "CPU-min" if self.device == "cpu" else f"GPU-h ({self.device})"

    def amount(self, seconds: float) -> float:
        return seconds / 60 if self.device == "cpu" else seconds / 3600

    @property
    def total(self) -> float:
        return sum(c.seconds for c in self.kinds.values())

    def as_json(self) -> dict:
        return {"device": self.device, "unit": self.unit, "total": round(self.amount(self.total), 3),
                "complete": not any(c.unknown for c in self.kinds.values()),
                "kinds": {k: {"nodes": c.nodes, "amount": round(self.amount(c.seconds), 3),
                              "unknown": c.unknown} for k, c in self.kinds.items()},
                "sources": self.sources, "derivation": __doc__.split("\n\n")[1].strip()}


@functools.lru_cache(maxsize=1)
def rates() -> dict[tuple[str, str], dict]:
    text = resources.files("xspec").joinpath("data/throughput.json").read_text()
    return {(r["arch"], r["device"]): r for r in json.loads(text)["rates"]}


def estimate(plan, gpu: str = DEFAULT_GPU, device: str = "auto") -> Estimate:
    """`device` is the spec's run.device: "cpu" counts CPU time; otherwise a tiny
    architecture with only a CPU rate counts on CPU too."""
    archs = {_arch(n) for n in plan.nodes.values()} - {None}
    on_cpu = device == "cpu" or (archs and all((a, gpu) not in rates() for a in archs)
                                 and any((a, "cpu") in rates() for a in archs))
    where = "cpu" if on_cpu else gpu
    result = Estimate(where, {}, {a: rates()[(a, where)]["source"] for a in sorted(archs)
                                  if (a, where) in rates()})
    expected = _expected_sizes(plan)
    for node in plan.ordered():
        cost = result.kinds.setdefault(node.kind, KindCost())
        cost.nodes += 1
        try:
            cost.seconds += _seconds(node, where, expected)
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


def _rate(node, where: str) -> dict:
    arch = _arch(node)
    if (arch, where) not in rates():
        known = sorted(a for a, d in rates() if d == where)
        raise _Unknown(f"no {where} rate for {arch} (known: {', '.join(known)})")
    return rates()[(arch, where)]


def _seconds(node, where: str, expected: dict[str, int]) -> float:
    config = node.identity
    if node.kind in ("poison", "select"):
        return 0.0  # a manifest of indices; a pick among recorded metrics
    if node.kind not in ("pretrain", "clean", "shrink_perturb", "pseudo_labels", "detect"):
        raise _Unknown(f"no estimate for {node.kind} nodes")
    rate = _rate(node, where)
    if node.kind == "pseudo_labels":  # one pass over the cleaning set's images
        return config["data"]["size"] / rate["eval_per_s"]
    if node.kind == "detect":  # one pass over the training pairs; CD optimises a mask per image
        pairs = _pairs(config["train"], expected)
        steps = config["detectors"].get("cognitive_distillation", {}).get("steps", 0)
        return pairs / rate["eval_per_s"] + pairs * steps / rate["train_per_s"]
    evals = _eval_images(config["eval"], expected)
    if node.kind == "shrink_perturb":
        return evals * len(config["shrink"]) * len(config["perturb"]) / rate["eval_per_s"]
    views = 2 if "ssl" in config["objective"].split("+") else 1
    if node.kind == "pretrain":
        pairs, passes = _pairs(config["train"], expected), config["epochs"]
    else:
        pairs, passes = config["data"]["size"], config["epochs"] + 1
    seconds = pairs * config["epochs"] * views / rate["train_per_s"]
    seconds += evals * passes / rate["eval_per_s"]
    if "deep_cluster" in config:
        seconds += pairs * config["epochs"] / rate["eval_per_s"]
    return seconds


def _eval_images(eval_config: dict, expected: dict[str, int]) -> int:
    source = eval_config["source"]
    images = source.get("size") or _size(source, expected)
    return images * (2 if "asr" in eval_config["metrics"] else 1)


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
    data["rates"] = [r for r in data["rates"] if (r["arch"], r["device"]) != (arch, device)]
    data["rates"].append({"arch": arch, "device": device, "train_per_s": round(train_per_s),
                          "eval_per_s": round(eval_per_s), "source": source})
    tmp = f"{target}.tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, target)
    rates.cache_clear()
    return target
