"""The README's claim about `xspec plan`'s CPU estimate rests on bench/estimate_measured.jsonl:
CPU time measured study by study (bench/bench_estimate_measured.py). Today's estimate must stay
within 2x of every recorded measurement, so a change to the estimate or to throughput.json that
breaks the claim fails here (the measurements are stored; nothing is timed)."""

import json
from pathlib import Path

import pytest

from xspec.compiler.estimate import estimate
from xspec.study import open_study
from tests_support import registries_kept  # conftest puts tests/ on sys.path

ROOT = Path(__file__).resolve().parents[2]
RECORDS = [json.loads(line) for line in
           (ROOT / "bench" / "estimate_measured.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module", autouse=True)
def _forget_plugins():
    """The plugins register into process-wide registries: undo that for the tests after these."""
    with registries_kept():
        yield


def _spec(name: str) -> Path:
    """A record's "toy/mini" or "plugins/study" (folder/stem, as the bench names it)."""
    stem = name.split("/")[1]
    folders = [ROOT / "examples" / "plugins"] if name.startswith("plugins/") else [
        ROOT / "specs" / "toy", ROOT / "specs" / "baselines" / "toy"]
    return next(f / f"{stem}.toml" for f in folders if (f / f"{stem}.toml").exists())


def test_records_cover_studies_of_every_node_kind_the_toy_twins_have():
    kinds = {k for r in RECORDS for k in r["kinds"]}
    assert {"poison", "pretrain", "select", "clean", "shrink_perturb", "pseudo_labels",
            "badclip_trigger", "decree", "detect"} <= kinds


@pytest.mark.parametrize("record", RECORDS, ids=[r["spec"] for r in RECORDS])
def test_todays_estimate_is_within_2x_of_the_measured_cpu_time(record):
    study = open_study(_spec(record["spec"]))
    cost = estimate(study.plan, device="cpu", threads=study.spec.run.threads)
    assert len(study.plan.nodes) == record["nodes"], "the spec changed since it was measured"
    assert 0.5 <= cost.total / record["measured"] <= 2.0, (cost.total, record["measured"])
