import pandas as pd
import pytest

from weldfusion.data.split import make_split, session_groups, sessions_crossing_splits


def toy_table():
    rows = []
    for label in range(3):
        for s in range(5):
            session = f"cls{label}_weld_{s}"
            rows += [{"key": f"{session}/p{label}{s}{i}", "session": session, "label": label} for i in range(4)]
    rows += [{"key": f"2_cls0_weld_0/p-twin{i}", "session": "2_cls0_weld_0", "label": 0} for i in range(4)]
    return pd.DataFrame(rows)


def test_twins_grouped_and_splits_session_disjoint():
    table = toy_table()
    groups = session_groups(table)
    assert groups[table["session"] == "2_cls0_weld_0"].iloc[0] == groups[table["session"] == "cls0_weld_0"].iloc[0]
    result = make_split(table, val=0.2, test=0.2, seed=3)
    labelled = table.assign(split=table["key"].map(result.splits))
    assert sessions_crossing_splits(labelled) == []
    assert labelled.groupby(groups)["split"].nunique().max() == 1
    assert (result.counts > 0).all().all()  # every category in every split
    assert result.warnings == []


def test_split_is_seeded():
    table = toy_table()
    a, b = make_split(table, seed=1), make_split(table, seed=1)
    assert a.splits.equals(b.splits)
    assert any(not make_split(table, seed=s).splits.equals(a.splits) for s in range(2, 8))


def test_too_few_sessions_warns():
    table = pd.DataFrame([{"key": f"s{s}/p{s}{i}", "session": f"s{s}", "label": 0} for s in range(2) for i in range(3)])
    result = make_split(table)
    assert any("only 2 session group(s)" in w for w in result.warnings)


def test_real_manifest_split_has_no_leak(real_manifest):
    real = real_manifest
    result = make_split(real.table, val=0.15, test=0.15, seed=0)
    labelled = real.table.assign(split=real.table["key"].map(result.splits))
    assert sessions_crossing_splits(labelled) == []
    assert (result.counts > 0).all().all()
    shares = result.counts.sum() / len(real.table)
    assert shares["train"] == pytest.approx(0.7, abs=0.05) and shares["test"] == pytest.approx(0.15, abs=0.05)
