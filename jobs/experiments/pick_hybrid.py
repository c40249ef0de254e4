"""The hybrid policy's setting chosen from a validation sweep (``hybrid_sweep.sh``): the rule, written once.

    .venv/bin/python jobs/experiments/pick_hybrid.py hybrid_selection.json

Among the ``cemg:hybrid(...)`` rows, the largest cold-start HR@10 whose overall HR@10 and NDCG@10 both stay
within one standard error of ``cemg``'s (the beam alone): cold-start items get recommended without the overall
list getting measurably worse. Validation figures only; the test split is read once, after the pick.
"""

from __future__ import annotations

import json
import sys


def pick(rows: dict) -> tuple[str | None, dict[str, float]]:
    """The chosen row's name (None when no row passes) and the floors it had to clear."""
    base, se = rows["cemg"]["overall"], rows["cemg"]["overall_se"]
    floors = {m: base[m] - se[m] for m in ("HR@10", "NDCG@10")}
    passing = [name for name, res in rows.items() if name.startswith("cemg:hybrid")
               and all(res["overall"][m] >= floor for m, floor in floors.items())]
    best = max(passing, key=lambda name: rows[name]["cold_start"]["HR@10"], default=None)
    return best, floors


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)
    if "overall_se" not in rows.get("cemg", {}):
        sys.exit(f"{path}: needs a 'cemg' row with 'overall_se' (a sweep by valid_models.py with standard errors, "
                 "2026-12-02 or later); re-run jobs/experiments/hybrid_sweep.sh")
    best, floors = pick(rows)
    print(f"rule: largest cold-start HR@10 with overall HR@10 >= {floors['HR@10']:.4f} and NDCG@10 >= "
          f"{floors['NDCG@10']:.4f} (cemg minus one standard error)")
    if best is None:
        print("picked: none (no cemg_hybrid setting keeps the overall figures within one standard error)")
        return
    res = rows[best]
    print(f"picked: {best} (valid HR@10 {res['overall']['HR@10']:.4f}, NDCG@10 {res['overall']['NDCG@10']:.4f}, "
          f"cold-start HR@10 {res['cold_start']['HR@10']:.4f})")


if __name__ == "__main__":
    main(sys.argv[1])
