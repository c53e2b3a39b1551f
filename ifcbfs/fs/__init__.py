"""The virtual tree (namespace) and its FUSE adapter (ops)."""
