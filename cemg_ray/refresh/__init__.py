"""Refreshing a trained run with new data (``cemg-ray refresh``): append an increment with stable ids, code the new
items without moving the old codes, fine-tune the generator from the previous model for a bounded budget, compare
the new and the previous model on the same newest holdout, and promote the new version only when it is not worse by
more than a stated margin (docs/OPERATIONS.md, "Refreshing a model").

One concern per module: ``config`` (the job's ``refresh`` section), ``increments`` (reading and appending an
increment), ``catalog`` (the item-side artifacts of the grown catalog), ``warmstart`` (the generator's weights from
the previous model), ``holdout`` (the two models on one holdout), ``promote`` (the decision and what serving reads),
``refresh`` (the steps in order), ``synthetic`` (a base and daily increments cut from the synthetic catalog by time).
"""
