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


def _random_sequences(rng: np.random.Generator, users: int, items: int) -> list[np.ndarray]:
    return [rng.integers(0, items, int(n)) for n in rng.geometric(0.15, users)]


def test_ragged_split_equals_the_per_user_lists_it_replaced():
    from cemg_ray.bench.split import reference_leave_one_out

    rng = np.random.default_rng(3)
    seqs = _random_sequences(rng, 500, 90)
    for max_len in (1, 3, 50):
        ref = reference_leave_one_out(seqs, 90, max_len=max_len)
        s = leave_one_out(seqs, 90, max_len=max_len)
        for key in ("user_idx", "valid_target", "test_target", "train_counts"):
            assert np.array_equal(getattr(s, key), ref[key]), key
        for key in ("train", "valid_history", "test_history"):
            rows = getattr(s, key)
            assert len(rows) == len(ref[key])
            assert all(np.array_equal(a, b) for a, b in zip(rows, ref[key], strict=True)), key
            assert np.array_equal(np.concatenate(rows), np.concatenate(ref[key]))
            assert np.array_equal(rows.flat(), np.concatenate(ref[key]))
            assert np.array_equal(rows.lengths(), [len(r) for r in ref[key]])


def test_ragged_rows_index_slice_and_pickle_like_a_list():
    import pickle

    from cemg_ray.data.split import Ragged

    rows = Ragged(np.arange(10), np.array([0, 3, 3, 7]), np.array([3, 3, 7, 10]))
    assert [r.tolist() for r in rows] == [[0, 1, 2], [], [3, 4, 5, 6], [7, 8, 9]]
    assert rows[-1].tolist() == [7, 8, 9] and rows[np.int64(2)].tolist() == [3, 4, 5, 6]
    assert [r.tolist() for r in rows[1:3]] == [[], [3, 4, 5, 6]]
    assert [r.tolist() for r in rows[np.array([3, 0])]] == [[7, 8, 9], [0, 1, 2]]
    assert rows[2:2].flat().tolist() == [] and len(rows[2:2]) == 0
    back = pickle.loads(pickle.dumps(rows))
    assert [r.tolist() for r in back] == [r.tolist() for r in rows]


def test_split_of_a_sequence_table_keeps_views_into_its_one_array(tmp_path):
    import pyarrow.parquet as pq

    from cemg_ray.bench.split import reference_leave_one_out, write_sequences
    from cemg_ray.data.split import sequences_from_table

    write_sequences(tmp_path / "s.parquet", 300, 6.0, 40)
    users, seqs = sequences_from_table(pq.read_table(tmp_path / "s.parquet"))
    s = leave_one_out(seqs, 40, max_len=5, user_idx=users)
    ref = reference_leave_one_out(list(seqs), 40, 5, users)
    assert np.array_equal(s.user_idx, ref["user_idx"])
    assert s.train.values is s.test_history.values is s.valid_history.values  # one array, no copy per kind
    u, i = s.train_pairs()
    assert np.array_equal(u, np.concatenate([np.full(len(t), x) for x, t in zip(ref["user_idx"], ref["train"])]))
    assert np.array_equal(i, np.concatenate(ref["train"]))


def test_a_history_length_below_one_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="max_len must be >= 1"):
        leave_one_out([np.arange(5)], 5, max_len=0)
