"""Dataset sources, synthetic subjects and the versioned, sharded dataset store."""
