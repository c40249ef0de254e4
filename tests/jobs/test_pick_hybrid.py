"""The hybrid-decoding selection rule of jobs/experiments/pick_hybrid.py on hand-made validation rows."""

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "jobs" / "experiments" / "pick_hybrid.py"
_spec = importlib.util.spec_from_file_location("pick_hybrid", _PATH)
pick_hybrid = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pick_hybrid)


def _row(hr: float, ndcg: float, cold_hr: float) -> dict:
    return {"overall": {"HR@10": hr, "NDCG@10": ndcg}, "cold_start": {"HR@10": cold_hr},
            "overall_se": {"HR@10": 0.002, "NDCG@10": 0.001}}


def test_pick_takes_the_best_cold_start_row_that_stays_within_one_standard_error():
    rows = {
        "cemg": _row(0.090, 0.047, 0.02),
        "cemg:hybrid(a)": _row(0.0885, 0.0465, 0.04),  # within both floors
        "cemg:hybrid(b)": _row(0.0850, 0.0465, 0.06),  # HR@10 below 0.088
        "cemg:hybrid(c)": _row(0.0890, 0.0455, 0.07),  # NDCG@10 below 0.046
        "cemg:hybrid(d)": _row(0.0900, 0.0470, 0.03),
    }
    best, floors = pick_hybrid.pick(rows)
    assert best == "cemg:hybrid(a)"
    assert floors["HR@10"] == 0.090 - 0.002 and floors["NDCG@10"] == 0.047 - 0.001


def test_pick_says_none_when_every_setting_costs_too_much():
    rows = {"cemg": _row(0.090, 0.047, 0.02), "cemg:hybrid(a)": _row(0.080, 0.040, 0.09)}
    assert pick_hybrid.pick(rows)[0] is None


def test_a_sweep_without_standard_errors_is_refused_naming_the_file(tmp_path) -> None:
    import json

    import pytest

    old = tmp_path / "old_sweep.json"
    old.write_text(json.dumps({"cemg": {"overall": {"HR@10": 0.09, "NDCG@10": 0.047}}}))
    with pytest.raises(SystemExit, match="old_sweep.json: needs a 'cemg' row with 'overall_se'"):
        pick_hybrid.main(str(old))
