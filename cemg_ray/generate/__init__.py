"""The generator: token- and item-level backbones, their training on Ray Train, constrained decoding."""
