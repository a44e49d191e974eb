"""Fixtures shared with other suites (the Talos test bundle)."""

from tests.talos.conftest import fresh_bundle  # noqa: F401 - a fixture, used by name
