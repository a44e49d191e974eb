"""Generated protobuf code (scripts/gen-talos-api-stubs)."""
