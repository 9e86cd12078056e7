"""The attack x defence matrix: rows attacks, columns defences (plus the poisoned model), each
cell the final epoch of the most accurate run, marked a success only under the ASR threshold at
no more than one point of accuracy lost."""

import json

import duckdb

from xspec.reports.matrix import matrices


def _store(rows):
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE xr_nodes (study VARCHAR, node_id VARCHAR, lineage VARCHAR)")
    con.execute("""CREATE TEMP TABLE xr_clean (study VARCHAR, node_id VARCHAR,
        pretrain_objective VARCHAR, clean_objective VARCHAR, select_id VARCHAR, sp_id VARCHAR)""")
    con.execute("""CREATE TEMP TABLE xr_eval (node_id VARCHAR, epoch INT, top1 DOUBLE,
        top1_n INT, asr DOUBLE, asr_n INT)""")
    for node, attack, defence, evals in rows:
        lineage = {"poison.kind": attack, **({f"clean.{defence}.threshold": 2.15}
                                              if defence != "none" else {})}
        con.execute("INSERT INTO xr_nodes VALUES ('s', ?, ?)", [node, json.dumps(lineage)])
        con.execute("INSERT INTO xr_clean VALUES ('s', ?, 'mmcl', 'mmcl+ssl', ?, NULL)",
                    [node, f"sel-{attack}"])
        for epoch, top1, asr in evals:
            con.execute("INSERT INTO xr_eval VALUES (?, ?, ?, 1000, ?, 900)",
                        [node, epoch, top1, asr])
    for attack, top1, asr in (("badnet", 0.60, 0.99), ("blended", 0.60, 0.95)):
        con.execute("INSERT INTO xr_eval VALUES (?, 2, ?, 1000, ?, 900)",
                    [f"sel-{attack}", top1, asr])
    return con


def test_cells_are_final_epochs_of_the_most_accurate_run_and_success_needs_both():
    con = _store([
        ("a", "badnet", "none", [(1, 0.70, 0.00), (2, 0.595, 0.01)]),  # final: ok (-0.5 pt)
        ("b", "badnet", "par", [(1, 0.59, 0.02), (2, 0.58, 0.02)]),    # -2 pts: no success
        ("c", "badnet", "par", [(2, 0.55, 0.00)]),                     # less accurate run
        ("d", "blended", "none", [(2, 0.61, 0.30)]),                   # ASR too high
    ])
    (m,) = matrices(con, 0.05)
    assert m["objective"] == "mmcl" and m["defences"] == ["none", "mmcl+ssl fine-tuning", "par"]
    badnet, blended = m["rows"]
    assert badnet["attack"] == "badnet" and blended["attack"] == "blended"
    start, plain, par = badnet["cells"]
    assert (start["top1"], start["asr"], start["success"]) == (0.60, 0.99, False)
    assert (plain["top1"], plain["asr"], plain["success"]) == (0.595, 0.01, True)
    assert (par["top1"], par["success"]) == (0.58, False)
    assert blended["cells"][2] is None and blended["cells"][1]["success"] is False
    assert 0 < plain["top1_pm"] < 0.05 and 0 < plain["asr_pm"] < 0.05


def test_no_matrix_without_a_cross():
    con = _store([("a", "badnet", "none", [(1, 0.7, 0.0)])])
    assert matrices(con, 0.05) == []


def test_pre_training_defences_are_columns_and_an_unattacked_row_has_no_asr():
    con = _store([("a", "badnet", "none", [(1, 0.60, 0.01)])])
    extra = [("r", {"poison.kind": "badnet", "pretrain.roclip.every": 2}, "sel-badnet-roclip",
              0.50, 0.02),
             ("n", {"poison.kind": "none"}, "sel-none", 0.62, None)]
    for node, lineage, select, top1, asr in extra:
        con.execute("INSERT INTO xr_nodes VALUES ('s', ?, ?)", [node, json.dumps(lineage)])
        con.execute("INSERT INTO xr_clean VALUES ('s', ?, 'mmcl', 'mmcl+ssl', ?, NULL)",
                    [node, select])
        con.execute("INSERT INTO xr_eval VALUES (?, 1, ?, 1000, ?, 900)", [node, top1, asr])
    con.execute("INSERT INTO xr_eval VALUES ('sel-badnet-roclip', 2, 0.55, 1000, 0.40, 900)")
    con.execute("INSERT INTO xr_eval VALUES ('sel-none', 2, 0.63, 1000, NULL, NULL)")
    (m,) = matrices(con, 0.05)
    assert m["defences"] == ["none", "mmcl+ssl fine-tuning", "roclip (pre-training)",
                             "roclip + mmcl+ssl fine-tuning"]
    badnet, clean = m["rows"]
    assert [c["top1"] for c in badnet["cells"]] == [0.60, 0.60, 0.55, 0.50]
    assert badnet["cells"][2]["asr"] == 0.40  # the RoCLIP model before cleaning
    assert clean["attack"] == "none" and clean["cells"][2:] == [None, None]
    assert clean["cells"][0]["asr"] is None and clean["cells"][1]["success"] is False
