"""The daemon's parts, in start order: the one place they are chosen (see daemon.py)."""

from __future__ import annotations

from provisioner.daemon import Runtime, ServiceFactory
from provisioner.web.service import web_service

__all__ = ["SERVICES", "Runtime"]

SERVICES: list[tuple[str, ServiceFactory]] = [
    ("web", web_service),
]
