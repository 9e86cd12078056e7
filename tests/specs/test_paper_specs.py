"""Every spec in specs/ validates, compiles, and holds the paper's grids (Appendix D, by hand)."""

from pathlib import Path

import pytest

from xspec.study import open_study

SPECS = Path(__file__).resolve().parents[2] / "specs"
PAPER = sorted(p.stem for p in SPECS.glob("*.toml"))
EXPERIMENTS = [name for name in PAPER if name != "quickstart"]  # one file each, twin in toy/

# Appendix D, copied from the paper (values in the order printed, repeats included).
D1 = D2 = [1e-5, 4e-5, 8e-5, 1e-4, 1.5e-4, 2e-4, 2.5e-4, 3e-4, 3.5e-4, 4e-4, 8e-4, 1e-3, 4e-3]
D3 = [1e-9, 5e-9, 1e-8, 5e-8, 1e-7, 3e-7, 7e-7, 1e-6, 3e-6, 7e-6, 1e-5, 3e-5]
D4 = [1e-9, 5e-9, 1e-8, 5e-8, 1e-7, 3e-7, 7e-7, 1e-6, 3e-6, 7e-6, 1e-5, 4e-5, 5e-5, 6e-5, 7e-5,
      9e-5, 1e-4, 3e-4, 4e-4, 5e-4, 6e-4, 1e-3, 3e-3]
D5 = [5e-05, 4.9e-05, 4.8e-05, 4.7e-05, 4.6e-05, 4.5e-05, 4.4e-05, 4.3e-05, 4.25e-05, 4.2e-05,
      4.1e-05, 4e-05, 3.9e-05, 3.8e-05, 3.75e-05, 3.7e-05, 3.6e-05, 3.5e-05, 3.4e-05, 3.3e-05,
      3.2e-05, 3.1e-05, 3e-05, 2.9e-05, 2.8e-05, 2.7e-05, 2.6e-05, 2.5e-05, 2.4e-05, 2.3e-05,
      2.2e-05, 2.1e-05, 2e-05, 1.9e-05, 1.8e-05, 1.7e-05, 1.6e-05, 1.5e-05, 1.4e-05, 1.3e-05,
      1.2e-05, 1.1e-05, 1e-05, 9e-06, 8e-06, 7e-06, 6e-06, 5e-06, 4.9e-06, 4.75e-06, 4.5e-06,
      4.25e-06, 4e-06, 3.75e-06, 3.5e-06, 3.25e-06, 3e-06, 2.75e-06, 2.5e-06, 2.25e-06, 2e-06,
      1.75e-06, 1.5e-06, 1.25e-06, 1e-06, 5e-07, 1e-07, 5e-08, 1e-08]
D6 = [0.005, 0.001, 0.0005, 0.0001, 5e-05, 5e-05, 4.9e-05, 4.8e-05, 4.75e-05, 4.7e-05, 4.6e-05,
      4.5e-05, 4.5e-05, 4.4e-05, 4.3e-05, 4.25e-05, 4.2e-05, 4.1e-05, 4e-05, 4e-05, 3.9e-05,
      3.8e-05, 3.75e-05, 3.7e-05, 3.6e-05, 3.5e-05, 3.5e-05, 3.4e-05, 3.3e-05, 3.25e-05, 3.2e-05,
      3.1e-05, 3e-05, 3e-05, 2.9e-05, 2.8e-05, 2.75e-05, 2.7e-05, 2.6e-05, 2.5e-05, 2.5e-05,
      2.4e-05, 2.3e-05, 2.25e-05, 2.2e-05, 2.1e-05, 2e-05, 2e-05, 1.9e-05, 1.8e-05, 1.75e-05,
      1.7e-05, 1.6e-05, 1.5e-05, 1.5e-05, 1.4e-05, 1.4e-05, 1.3e-05, 1.3e-05, 1.2e-05, 1.2e-05,
      1.1e-05, 1.1e-05, 1e-05, 1e-05, 9e-06, 9e-06, 8e-06, 8e-06, 7e-06, 7e-06, 6e-06, 6e-06,
      5e-06, 5e-06, 1e-06, 1e-06, 5e-07, 5e-07, 1e-07, 1e-07, 5e-08, 5e-08, 1e-08, 1e-08]
D7 = [5e-05, 4.75e-05, 4.25e-05, 4e-05, 3.8e-05, 3.75e-05, 3.7e-05, 3.6e-05, 3.5e-05, 3.4e-05,
      3.3e-05, 3.2e-05, 3.1e-05, 3e-05, 2.9e-05, 2.8e-05, 2.7e-05, 2.6e-05, 2.5e-05, 2.4e-05,
      2.3e-05, 2.2e-05, 2.1e-05, 2e-05, 1.9e-05, 1.8e-05, 1.7e-05, 1.6e-05, 1.5e-05, 1.4e-05,
      1.3e-05, 1.2e-05, 1.1e-05, 1e-05, 9e-06, 8e-06, 7e-06, 6e-06, 5e-06, 1e-06, 5e-07, 1e-07,
      5e-08, 1e-08]
D8 = [0.007, 0.006, 0.005, 0.004, 0.003, 0.002, 0.001, 0.0009, 0.0008, 0.0007, 0.0006, 0.0005,
      0.0004, 0.0003, 0.0002, 0.00018, 0.00017, 0.00016, 0.00014, 0.00013, 0.00012, 0.00011,
      0.0001, 9e-05, 8e-05, 7e-05, 6e-05, 5e-05, 4.75e-05, 4.25e-05, 4e-05, 3.8e-05, 3.75e-05,
      3.7e-05, 3.6e-05, 3.5e-05, 3.4e-05, 3.3e-05, 3.2e-05, 3.1e-05, 3e-05, 2.9e-05, 2.8e-05,
      2.7e-05, 2.6e-05, 2.5e-05, 2.4e-05, 2.3e-05, 2.2e-05, 2.1e-05, 2e-05, 1.9e-05, 1.8e-05,
      1.7e-05, 1.6e-05, 1.5e-05, 1.4e-05, 1.3e-05, 1.2e-05, 1.1e-05, 1e-05, 9e-06, 8e-06, 7e-06,
      6e-06, 5e-06, 1e-06, 5e-07, 1e-07, 5e-08, 1e-08]
D9 = [1e-7, 3e-7, 7e-7, 1e-6, 3e-6, 7e-6, 1e-5, 3e-5]
D10 = [1e-8, 5e-8, 1e-7, 3e-7, 5e-7, 7e-7, 1e-6, 3e-6, 5e-6, 7e-6, 1e-5, 3e-5, 5e-5, 1e-4, 3e-4,
       5e-4, 7e-4, 1e-4, 3e-4]
D11 = [5e-6, 1e-5, 5e-5, 1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 1e-3]
D11_WEIGHTS = [0.1, 0.5, 1, 2, 5, 10, 20, 50]
D12 = [3e-6, 7e-6, 1e-5, 3e-5, 1e-4, 5e-4, 1e-3, 5e-3]
D12_WEIGHTS = [0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
D13 = [1e-5, 2e-5, 4e-5, 5e-5, 7e-5, 9e-5, 1e-4, 2e-4, 1e-3]
D13_SHRINK = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.92, 0.93, 0.95, 0.96, 0.97, 0.98,
              0.99, 1]
D13_PERTURB = [1e-5, 1e-4, 1e-3, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.4, 0.8, 1, 2, 3, 4]
D14 = [1e-9, 5e-9, 1e-8, 5e-8, 1e-7, 3e-7, 7e-7, 1e-6, 3e-6, 7e-6, 1e-5, 3e-5, 1e-4, 1e-3]
D15 = [1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 6e-5, 7e-5, 9e-5, 1e-4, 2e-4, 3e-4, 4e-4, 5e-4]
D16 = [5e-5, 1e-4, 5e-4, 1e-3]

# Printed counts of Appendix D, to catch a mistyped list above.
assert [len(d) for d in (D1, D3, D4, D5, D6, D7, D8, D9, D10, D11, D12, D13, D14, D15, D16)] == [
    13, 12, 23, 69, 85, 44, 71, 8, 19, 9, 8, 9, 14, 13, 4]
assert (len(D11_WEIGHTS), len(D12_WEIGHTS), len(D13_SHRINK), len(D13_PERTURB)) == (8, 9, 17, 15)

# Nodes per kind. Poison nodes: one per (training set, attack); pre-training: two objectives per
# poison node (MMCL and MMCL+SSL), each with a select node.
EXPECTED = {
    # CC3M (D.1 + D.2: 2 x 13) + CC6M (D.3 12 + D.4 23) = 61 learning-rate runs, each with the
    # three cleaning losses of Figures 2 and 10 (MMCL, SSL, MMCL+SSL): 3 x 61 = 183.
    "table2": {"poison": 2, "pretrain": 4, "select": 4, "clean": 183},
    # Six rows x two objectives: BadNet CC3M, BadNet CC6M, label-consistent CC6M, finetuned CC6M
    # (shares BadNet CC6M's poison node): 3 poison, 8 pre-training runs, no cleaning.
    "table3": {"poison": 3, "pretrain": 8, "select": 8},
    # D.5 69 + D.6 62 distinct of 85 printed = 131.
    "fig03_finetuned": {"poison": 1, "pretrain": 2, "select": 2, "clean": 131},
    # No ViT grid in the paper; D.3 12 + D.4 23 = 35.
    "fig04_vit": {"poison": 1, "pretrain": 2, "select": 2, "clean": 35},
    # D.3 12 + D.4 23 = 35 (table2's CleanCLIP runs on CC6M).
    "fig05_trajectories": {"poison": 1, "pretrain": 2, "select": 2, "clean": 35},
    # 2 objectives x 2 poison counts (5, 10) x D.10 17 distinct of 19 = 68.
    "fig06_poisoned_cleaning": {"poison": 1, "pretrain": 2, "select": 2, "clean": 68},
    # D.11 9 lrs x 8 weights x 2 label sources (k-means, stronger model) = 144.
    "fig07_deep_clustering": {"poison": 1, "pretrain": 2, "select": 2, "clean": 144},
    # D.12 8 lrs x 9 weights x 3 losses = 216, once as weight decay, once as L2-to-start: 432.
    "fig08_heavy_regularisation": {"poison": 1, "pretrain": 2, "select": 2, "clean": 432},
    # One shrink-and-perturb node (17 x 15 candidates inside), then D.13 9 lrs.
    "fig09_shrink_perturb": {"poison": 1, "pretrain": 2, "select": 2, "shrink_perturb": 1,
                             "clean": 9},
    # 2 objectives x 2 poison counts x D.9 8 = 32.
    "fig11_poisoned_cleaning_cc3m": {"poison": 1, "pretrain": 2, "select": 2, "clean": 32},
    # D.7 44 + D.8 71 = 115.
    "fig12_label_consistent": {"poison": 1, "pretrain": 2, "select": 2, "clean": 115},
    # D.14 14 (200K) + D.4 23 (100K panel) = 37.
    "fig13_large_cleaning_set": {"poison": 1, "pretrain": 2, "select": 2, "clean": 37},
    # D.15 13 lrs x 2 lengths (50, 100) + D.4 23 (20 epochs) = 49.
    "fig14_more_epochs": {"poison": 1, "pretrain": 2, "select": 2, "clean": 49},
    # D.16 4 lrs x 4 weights (2, 4, 6, 8) + D.4 23 (weight 1) = 39.
    "fig15_ssl_weights": {"poison": 1, "pretrain": 2, "select": 2, "clean": 39},
    # Not the paper's: 6 attacks and no attack (one poison node each; BadCLIP's after its
    # trigger node) x 2 objectives x {no pre-training defence, RoCLIP, SafeCLIP}, the undefended
    # models cleaned by 4 defences (no attack: CleanCLIP only), the defended ones by CleanCLIP:
    # 6 x 2 x 4 + 2 + 6 x 2 x 2 = 74.
    "attack_defence": {"badclip_trigger": 1, "poison": 7, "pretrain": 38, "select": 38,
                       "clean": 74},
    # Not a paper experiment: 2 objectives x 3 lrs = 6.
    "quickstart": {"poison": 1, "pretrain": 2, "select": 2, "clean": 6},
}

# The learning rates each cleaned model gets, keyed by (training set, pre-training objective).
GRIDS = {
    "table2": {("cc3m", "mmcl"): D1, ("cc3m", "mmcl+ssl"): D2, ("cc6m", "mmcl"): D3,
               ("cc6m", "mmcl+ssl"): D4},
    "fig03_finetuned": {("cc6m", "mmcl"): D5, ("cc6m", "mmcl+ssl"): D6},
    "fig04_vit": {("cc6m", "mmcl"): D3, ("cc6m", "mmcl+ssl"): D4},
    "fig05_trajectories": {("cc6m", "mmcl"): D3, ("cc6m", "mmcl+ssl"): D4},
    "fig06_poisoned_cleaning": {("cc6m", "mmcl"): D10, ("cc6m", "mmcl+ssl"): D10},
    "fig07_deep_clustering": {("cc6m", "mmcl+ssl"): D11},
    "fig08_heavy_regularisation": {("cc6m", "mmcl+ssl"): D12},
    "fig09_shrink_perturb": {("cc6m", "mmcl+ssl"): D13},
    "fig11_poisoned_cleaning_cc3m": {("cc3m", "mmcl"): D9, ("cc3m", "mmcl+ssl"): D9},
    "fig12_label_consistent": {("cc6m", "mmcl"): D7, ("cc6m", "mmcl+ssl"): D8},
    "fig13_large_cleaning_set": {("cc6m", "mmcl+ssl"): D14 + D4},
    "fig14_more_epochs": {("cc6m", "mmcl+ssl"): D15 + D4},
    "fig15_ssl_weights": {("cc6m", "mmcl+ssl"): D16 + D4},
}

# Other swept clean fields: spec -> {field: the distinct values}.
AXES = {
    "table2": {"objective": {"mmcl", "ssl", "mmcl+ssl"}, "epochs": {20}},
    "fig06_poisoned_cleaning": {"poisons": {5, 10}},
    "fig11_poisoned_cleaning_cc3m": {"poisons": {5, 10}},
    "fig07_deep_clustering": {"deep_cluster.weight": set(D11_WEIGHTS),
                              "deep_cluster.labels": {
                                  "kmeans", "/data/cc6m/pseudo_labels_siglip_vitl14.csv"},
                              "deep_cluster.k": {1000}},
    "fig08_heavy_regularisation": {"objective": {"mmcl", "ssl", "mmcl+ssl"}},
    "fig13_large_cleaning_set": {"data.size": {100_000, 200_000}},
    "fig14_more_epochs": {"epochs": {20, 50, 100}},
    "fig15_ssl_weights": {"ssl_weight": {1, 2, 4, 6, 8}},
}


@pytest.fixture(autouse=True)
def paper_env(tmp_path, monkeypatch):
    """Default data paths, and a stand-in file for OpenAI's RN50 weights (compile stats it)."""
    for var in ("CC3M", "CC6M", "IMAGENET_VAL", "PSEUDO_LABELS"):
        monkeypatch.delenv(var, raising=False)
    checkpoint = tmp_path / "RN50.pt"
    checkpoint.write_bytes(b"not really weights")
    monkeypatch.setenv("CLIP_RN50", str(checkpoint))


def counts(plan) -> dict[str, int]:
    out: dict[str, int] = {}
    for node in plan.nodes.values():
        out[node.kind] = out.get(node.kind, 0) + 1
    return out


def upstream(plan, node, kind: str):
    """The first node of `kind` on the path clean -> [shrink_perturb] -> select -> pretrain."""
    while node.kind != kind:
        node = plan.nodes[node.deps[0]]
    return node


def group(plan, clean) -> tuple[str, str]:
    pretrain = upstream(plan, clean, "pretrain").identity
    dataset = "cc3m" if "cc3m" in pretrain["train"]["path"] else "cc6m"
    return dataset, pretrain["objective"]


def field(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config["path"] if isinstance(config, dict) else config  # a file's fingerprint


def test_every_spec_is_listed():
    assert set(PAPER) == set(EXPECTED)


@pytest.mark.parametrize("name", PAPER)
def test_spec_compiles_to_the_papers_grid(name):
    plan = open_study(SPECS / f"{name}.toml").plan
    assert counts(plan) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_learning_rates_are_appendix_d(name):
    plan = open_study(SPECS / f"{name}.toml").plan
    got: dict[tuple, set] = {}
    for clean in plan.of_kind("clean"):
        got.setdefault(group(plan, clean), set()).add(clean.identity["lr"])
    assert got == {key: set(values) for key, values in GRIDS[name].items()}


@pytest.mark.parametrize("name", sorted(AXES))
def test_other_axes_are_appendix_d(name):
    plan = open_study(SPECS / f"{name}.toml").plan
    for dotted, expected in AXES[name].items():
        assert {field(n.identity, dotted) for n in plan.of_kind("clean")} == expected, dotted


def test_heavy_regularisation_is_weight_decay_or_l2_to_start():
    """D.12's nine weights as AdamW weight decay (the paper's runs), and as an L2 penalty towards
    the starting weights (the alternative), each with every learning rate and cleaning loss."""
    plan = open_study(SPECS / "fig08_heavy_regularisation.toml").plan
    runs = [(n.identity["weight_decay"], n.identity.get("l2_weight"), n.identity["lr"],
             n.identity["objective"]) for n in plan.of_kind("clean")]
    losses = ("mmcl", "ssl", "mmcl+ssl")
    expected = ({(w, None, lr, loss) for w in D12_WEIGHTS for lr in D12 for loss in losses}
                | {(0.1, w, lr, loss) for w in D12_WEIGHTS for lr in D12 for loss in losses})
    assert len(runs) == len(expected) == 432 and set(runs) == expected


def test_shrink_and_perturb_candidates_are_d13():
    plan = open_study(SPECS / "fig09_shrink_perturb.toml").plan
    (node,) = plan.of_kind("shrink_perturb")
    assert node.identity["shrink"] == D13_SHRINK and node.identity["perturb"] == D13_PERTURB
    assert node.identity["asr_threshold"] == 0.15  # Section 5: "ASR was lower than 15%"


def test_pretraining_follows_appendix_a():
    for name in EXPERIMENTS:
        for node in open_study(SPECS / f"{name}.toml").plan.of_kind("pretrain"):
            cfg = node.identity
            scratch = cfg["model"]["init"] == "scratch"
            assert (cfg["epochs"], cfg["warmup_steps"]) == (64, 10_000), name
            assert cfg["lr"] == (1e-3 if scratch else 5e-7), name
            # From scratch: the authors' global batch, 256 / 128 per GPU on 8 GPUs (their shell
            # history); finetuning: the paper's numbers (no run recorded).
            per_gpu = {"mmcl": 256, "mmcl+ssl": 128}[cfg["objective"]]
            assert cfg["batch_size"] == (8 * per_gpu if scratch else per_gpu), name
            # QuickGELU, as OpenAI's weights and CleanCLIP's model code (docs/FIDELITY.md)
            vit = name == "fig04_vit"
            assert cfg["model"]["arch"] == ("ViT-B-32-quickgelu" if vit else "RN50-quickgelu"), name


def test_match_accuracy_pairs_runs_of_the_same_data_model_and_attack():
    for name in EXPERIMENTS:
        plan = open_study(SPECS / f"{name}.toml").plan
        for select in plan.of_kind("select"):
            pretrain = plan.nodes[select.deps[0]]
            if pretrain.identity["objective"] == "mmcl":
                assert select.identity == {"policy": "best_accuracy"}, name
                continue
            assert select.identity == {"policy": "match_accuracy", "reference": "mmcl"}, name
            reference = plan.nodes[plan.nodes[select.deps[1]].deps[0]]
            assert reference.identity["objective"] == "mmcl"
            assert reference.deps == pretrain.deps  # the same poison node
            for key in ("model", "train", "eval", "lr", "epochs"):  # the attack: the poison's
                assert reference.identity[key] == pretrain.identity[key], (name, key)


def test_repeated_learning_rates_are_noted():
    fig03 = open_study(SPECS / "fig03_finetuned.toml").plan
    assert fig03.notes == [
        "clean.lr: dropped repeated value(s) 5e-05, 4.5e-05, 4e-05, 3.5e-05, 3e-05, 2.5e-05, "
        "2e-05, 1.5e-05, 1.4e-05, 1.3e-05, 1.2e-05, 1.1e-05, 1e-05, 9e-06, 8e-06, 7e-06, 6e-06, "
        "5e-06, 1e-06, 5e-07, 1e-07, 5e-08, 1e-08; 62 distinct of 85 written"]
    fig06 = open_study(SPECS / "fig06_poisoned_cleaning.toml").plan
    assert fig06.notes == [
        "clean.lr: dropped repeated value(s) 0.0001, 0.0003; 17 distinct of 19 written"]


def test_comparison_panels_reuse_table2_runs():
    """Figure 5 is table2's CC6M CleanCLIP runs; the D.4 panels of Figures 13-15 are too."""
    table2 = open_study(SPECS / "table2.toml").plan
    cleanclip = {n.id for n in table2.of_kind("clean") if n.identity["objective"] == "mmcl+ssl"}
    expected = {"fig05_trajectories": 35, "fig13_large_cleaning_set": 23,
                "fig14_more_epochs": 23, "fig15_ssl_weights": 23}
    for name, shared in expected.items():
        ids = {n.id for n in open_study(SPECS / f"{name}.toml").plan.of_kind("clean")}
        assert len(ids & cleanclip) == shared, name


def test_finetuned_specs_plan_without_the_checkpoint_file(monkeypatch, tmp_path):
    missing = tmp_path / "absent" / "RN50.pt"
    monkeypatch.setenv("CLIP_RN50", str(missing))
    for name in ("table3", "fig03_finetuned"):
        plan = open_study(SPECS / f"{name}.toml").plan  # still plans, and says what is missing
        assert (f"model.init: {missing}: No such file or directory; runs that read it will fail "
                "until it exists") in plan.notes


def test_all_paper_specs_compile_to_the_expected_node_count():
    # Compile speed is bench/bench_compiler.py's business: a timing assert fails on a loaded machine.
    nodes = sum(len(open_study(SPECS / f"{name}.toml").plan.nodes) for name in PAPER)
    assert nodes == sum(sum(c.values()) for c in EXPECTED.values())
