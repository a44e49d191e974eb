"""Generated protobuf code (scripts/gen-telemetry-stubs)."""
