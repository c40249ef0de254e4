"""collab."""
