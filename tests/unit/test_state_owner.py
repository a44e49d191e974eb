"""Only the lifecycle writes a machine's state (ARCHITECTURE.md "Machine lifecycle").

Other parts report signals; `provisioner.lifecycle.move` asks the table and calls the
store's `write_transition`. This test reads every module under provisioner/ and fails on
any other writer: a call of `write_transition` outside lifecycle.py, or a `state`,
`state_reason` or `state_since` keyword/assignment aimed at the machine table outside
the store implementations (which only persist what `write_transition` is given).
"""

from __future__ import annotations

import ast
from pathlib import Path

import provisioner

PACKAGE = Path(provisioner.__file__).parent
STATE_COLUMNS = {"state", "state_reason", "state_since"}
LIFECYCLE = PACKAGE / "lifecycle.py"
STORE_IMPLEMENTATIONS = {PACKAGE / "store" / "repository.py", PACKAGE / "store" / "memory.py"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _machine_state_writes(tree: ast.AST) -> list[int]:
    """Lines that write a machine's state columns: `.values(state=...)`, `update_machine(state=...)`,
    `MachineRow(state=...)`, `row.state = ...` on a machine row, `{"state": ...}` values for MachineRow."""
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            # A new row (inventory registration) starts the clock of its initial state
            # (state_since) but may not choose the state.
            columns = {"state", "state_reason"} if name == "MachineRow" else STATE_COLUMNS
            if name in {"values", "update_machine", "MachineRow"} and any(
                k.arg in columns for k in node.keywords
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            lines.extend(
                node.lineno
                for target in targets
                if isinstance(target, ast.Attribute)
                and target.attr in STATE_COLUMNS
                and isinstance(target.value, ast.Name)
                and "machine" in target.value.id.lower()
            )
    return lines


def _transition_calls(tree: ast.AST) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"write_transition", "transition"}
    ]


def test_only_the_lifecycle_calls_write_transition() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): lines
        for p in _modules()
        if p != LIFECYCLE and (lines := _transition_calls(ast.parse(p.read_text(), str(p))))
    }
    assert offenders == {}


def test_no_module_writes_machine_state_columns() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): lines
        for p in _modules()
        if p not in STORE_IMPLEMENTATIONS
        and (lines := _machine_state_writes(ast.parse(p.read_text(), str(p))))
    }
    assert offenders == {}


def test_the_checks_see_a_direct_write() -> None:
    # the detector must catch the shapes the old web layer used
    direct = ast.parse(
        "async def f(store, machine):\n"
        "    await store.transition('m1', 'Netbooting', expect=['Registered'])\n"
        "    await store.update_machine('m1', state='Failed')\n"
        "    machine.state = 'Failed'\n"
    )
    assert _transition_calls(direct) == [2]
    assert sorted(_machine_state_writes(direct)) == [3, 4]


def test_the_lifecycle_is_the_caller() -> None:
    assert _transition_calls(ast.parse(LIFECYCLE.read_text())) != []
