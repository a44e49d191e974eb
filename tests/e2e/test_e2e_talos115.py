"""End to end: a cluster declaring Talos v1.15 provisions in the lab (issue 15).

From contract 1.14 on, Talos's config is multi-document: the v1alpha1 document is slim and
the cluster endpoint and the install disk move to ``KubeClusterConfig`` and
``UnattendedInstallConfig`` documents (provisioner/talos/multidoc.py). The lab agent
reads those, installs to its disk and reboots into it. One control plane and one worker,
BIOS firmware (2 cores, TCG).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo import DEFAULT_INVENTORY, LabStack
from lab.report import first_attempt_problems
from tests.e2e.test_e2e import PROVISION_TIMEOUT, events, machines, serial, stack_fixture
from tests.e2e.test_e2e_install import disk_bytes

pytestmark = [pytest.mark.lab, pytest.mark.e2e, pytest.mark.timeout(900)]

NAMES = ["lab-cp1", "lab-w1"]


def talos115_inventory(path: Path) -> Path:
    """The lab inventory with ``talosVersion: v1.15.0`` and only lab-cp1 and lab-w1."""
    text = DEFAULT_INVENTORY.read_text(encoding="utf-8")
    assert "talosVersion: v1.13.0" in text
    text = text.replace("talosVersion: v1.13.0", "talosVersion: v1.15.0", 1)
    docs = [doc for doc in text.split("\n---\n") if "name: lab-w2\n" not in doc]
    path.write_text("\n---\n".join(docs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lab115(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    inventory = talos115_inventory(tmp_path_factory.mktemp("inv") / "lab-talos115.yaml")
    yield from stack_fixture(tmp_path_factory, machines=2, firmware="bios", inventory=inventory)


def test_talos115_cluster_provisions_first_attempt(lab115: LabStack, tmp_path: Path) -> None:
    run = lab115.cli("provision", *NAMES, "--wait", "--timeout", PROVISION_TIMEOUT, check=False, capture=True)
    state = machines(lab115)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert sorted(state) == NAMES
    for name in NAMES:
        assert state[name]["state"] == "Provisioned", state[name]
        log = serial(lab115, name)
        assert "LAB-AGENT: config fetched" in log, log[-3000:]
        # the install disk came from UnattendedInstallConfig (no machine.install in 1.15)
        assert "LAB-AGENT: installing Talos to disk /dev/vda" in log, log[-3000:]
        assert "LAB-AGENT: booted from disk; config loaded from STATE" in log
        assert "LAB-AGENT: serving 50000" in log
        kinds = [e["kind"] for e in events(lab115, name)]
        assert "config.served" in kinds
        # v1.15 is a known contract: served as itself, no "newer than known" fallback note
        assert "config.contract" not in kinds, kinds
        # the config the node installed is the v1.15 multi-document shape
        image = disk_bytes(lab115, name, tmp_path)
        assert b"kind: KubeClusterConfig" in image
        assert b"kind: UnattendedInstallConfig" in image
    # the worker got its certificate from our trustd; the control plane signs its own
    assert "trustd certificate issued" in serial(lab115, "lab-w1")
    assert "signed with the OS CA from the config" in serial(lab115, "lab-cp1")
    # each machine got there on its first attempt: one attempt, one boot plus the disk boot
    assert first_attempt_problems(lab115.outcomes()) == []
