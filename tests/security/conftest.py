"""Fixtures shared with other suites (the Talos test bundle)."""

from tests.talos.conftest import fresh_bundle, other_bundle  # noqa: F401 - fixtures, used by name
