"""Dataset loaders, the normalised catalog tables and the leave-one-out split."""
