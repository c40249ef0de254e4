"""Collaborative-guided fusion and the RQ-VAE that turn items into unique semantic IDs."""
