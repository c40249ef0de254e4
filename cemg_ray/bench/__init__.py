"""``cemg-ray bench`` subcommands: each measures this project's path against a reference in one run."""
