"""Ray Serve application: the constrained decoder behind a FastAPI ingress."""
