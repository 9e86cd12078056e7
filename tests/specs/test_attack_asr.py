"""Each attack kind backdoors a toy model: poisoned pre-training gives an ASR clearly above that
of the same training with a single poison.

ASR needs a target, so the baseline is not `attack.kind = "none"` but the identical spec with
`attack.poisons = 1`: the same data, model, seed and trigger, one poisoned pair in 512 instead of
48 (~9 %). Its ASR is how often a practically clean model sends triggered non-"bag" test images
to "bag" anyway. MMCL+SSL on the 1-layer 16-px micro ViT, because at this scale it both learns
(top-1 ~0.55 after 4 epochs) and takes the backdoor (calibrated: ASR 0.4-0.75 poisoned against
0.01-0.14 with one poison); MMCL alone learns too little here for a clean baseline.
The whole-image triggers are stronger than the defaults so that 16-px images carry them: blended
alpha 0.4 (default 0.2), WaNet strength 4 (0.5 moves pixels by a fraction of a pixel at 16 px),
SIG amplitude 0.3 (0.1).
"""

import duckdb
import pytest

from xspec.store.workspace import Workspace
from xspec.study import ingest_study, open_study, run_study

pytestmark = pytest.mark.slow

ATTACKS = {
    "badnet": 'trigger = { size = 8, pattern = "gaussian_fixed", location = "corner" }',
    # 36 of the 512 training captions name "bag" ("grey shoulder bag for sale"); 32 carry the patch.
    "label_consistent": 'trigger = { size = 8, pattern = "gaussian_fixed", location = "corner" }',
    "blended": "alpha = 0.4",
    "wanet": "grid = 4\nstrength = 4.0",
    "sig": "amplitude = 0.3\nfrequency = 6.0",
}
POISONS = {"label_consistent": 32}

SPEC = """
[study]
name = "asr-{kind}"
seed = 0

[data]
train = {{ format = "fashion_mnist", split = "train", size = 512 }}
eval = {{ format = "fashion_mnist", split = "test", size = 256 }}

[attack]
kind = "{kind}"
target = "bag"
poisons = [1, {poisons}]
{params}

[model]
arch = "xspec-vit-micro"

[pretrain]
objective = "mmcl+ssl"
epochs = 4
batch_size = 32
lr = 1e-3
warmup_steps = 4
select = "final"

[evaluate]
batch_size = 256

[run]
threads = 1
"""


@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_poisoning_raises_asr_well_above_one_poison(kind, write_spec, tmp_path):
    text = SPEC.format(kind=kind, poisons=POISONS.get(kind, 48), params=ATTACKS[kind])
    study = open_study(write_spec(text, f"{kind}.toml"))
    workspace = Workspace(tmp_path / "ws")
    outcome = run_study(study, workspace, "debug")
    assert not outcome.failed and not outcome.blocked, outcome.failed
    ingest_study(study, workspace)
    con = duckdb.connect(str(workspace.db_path), read_only=True)
    try:
        rows = con.execute("""
            SELECT (n.lineage->>'$."poison.poisons"')::INTEGER AS poisons, m.metric, m.value
            FROM nodes n JOIN metrics m ON m.node_id = n.id
            WHERE n.study = ? AND n.kind = 'pretrain' AND m.split = 'eval'
              AND m.epoch = 4 AND m.metric IN ('top1', 'asr')""", [study.plan.study]).fetchall()
    finally:
        con.close()
    scores = {(poisons, metric): value for poisons, metric, value in rows}
    poisoned = POISONS.get(kind, 48)
    print(f"{kind}: ASR {scores[poisoned, 'asr']:.2f} with {poisoned} poisons, "
          f"{scores[1, 'asr']:.2f} with 1; top-1 {scores[1, 'top1']:.2f}")
    assert scores[1, "top1"] > 0.3  # the baseline model learned something: its ASR means something
    assert scores[poisoned, "asr"] >= scores[1, "asr"] + 0.25
    assert scores[poisoned, "asr"] >= 0.35
