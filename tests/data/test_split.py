import numpy as np

from cemg_ray.data.split import leave_one_out
from cemg_ray.data.synthetic import make_catalog


def test_leave_one_out_positions_and_truncation():
    seqs = [np.arange(30), np.array([5, 6]), np.array([7, 8, 9])]
    s = leave_one_out(seqs, 40, max_len=20)
    assert s.user_idx.tolist() == [0, 2]  # the 2-item user cannot be split
    assert s.test_target.tolist() == [29, 9] and s.valid_target.tolist() == [28, 8]
    assert s.train[0].tolist() == list(range(28)) and s.train[1].tolist() == [7]
    assert s.test_history[0].tolist() == list(range(9, 29))  # 20 most recent, validation item included
    assert s.valid_history[0].tolist() == list(range(8, 28))


def test_no_validation_or_test_interaction_reaches_training_data():
    cat = make_catalog()
    s = leave_one_out(cat.sequences, cat.num_items)
    for _u, train, vt, tt, seq in zip(s.user_idx, s.train, s.valid_target, s.test_target,
                                     [cat.sequences[i] for i in s.user_idx]):
        assert len(train) == len(seq) - 2
        assert vt not in train and tt not in train  # sequences never repeat an item
    # training counts are built from train only: removing the held-out items changes them
    full = np.bincount(np.concatenate(cat.sequences), minlength=cat.num_items)
    assert (full - s.train_counts).sum() == 2 * len(s.user_idx)
    users, items = s.train_pairs()
    held = set(zip(s.user_idx.tolist(), s.test_target.tolist())) | set(zip(s.user_idx.tolist(),
                                                                           s.valid_target.tolist()))
    assert not held & set(zip(users.tolist(), items.tolist()))


def test_cold_items_mask():
    s = leave_one_out([np.array([0, 1, 2, 3])] * 7 + [np.array([4, 5, 6])], 8, cold_start_max=5)
    assert s.cold_items().tolist() == [False, False, True, True, True, True, True, True]
