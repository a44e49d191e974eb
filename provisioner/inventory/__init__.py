"""Inventory files (YAML documents, CSV machine lists) to and from the database."""

from provisioner.inventory.export import export_inventory
from provisioner.inventory.sync import Change, InventoryConflictError, Plan, apply_inventory
from provisioner.inventory.validate import Inventory, load_inventory

__all__ = [
    "Change",
    "Inventory",
    "InventoryConflictError",
    "Plan",
    "apply_inventory",
    "export_inventory",
    "load_inventory",
]
