"""Item features: text and image encoders on a Ray Data actor pool, then PCA."""
