"""LightGCN on the training interactions: the collaborative item embeddings the fusion is guided by."""
