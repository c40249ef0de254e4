"""Leave-one-out evaluation (HR/NDCG, full ranking, cold-start) and the baselines it compares with."""
