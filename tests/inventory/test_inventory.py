from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from provisioner.inventory import InventoryConflictError, apply_inventory, export_inventory, load_inventory
from provisioner.settings import SubnetSettings
from provisioner.store.repository import Store

ROOT = Path(__file__).resolve().parents[2]
SUBNETS = (SubnetSettings(cidr=ipaddress.IPv4Network("10.0.0.0/24")),)

GOOD = """\
kind: Cluster
name: c1
talosVersion: v1.13.0
kubernetesVersion: 1.33.0
endpoint: https://10.0.0.10:6443
---
kind: Machine
name: m1
cluster: c1
role: controlplane
macs: [52-54-00-00-00-01]
uuid: 00000000-0000-4000-8000-000000000001
ip: 10.0.0.11
labels: {rack: r1}
taints: [{key: k, value: v}]
bmc: {driver: ipmi, address: 127.0.0.1, port: 6230, username: admin, password: InlinePw123}
---
kind: Machine
name: m2
cluster: c1
macs: [5254.0000.0002]
bmc: {driver: ipmi, address: 127.0.0.1, username: admin, password: env:PV_TEST_BMC_PW}
"""


def write(dir_: Path, name: str, text: str) -> Path:
    path = dir_ / name
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _bmc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PV_TEST_BMC_PW", "EnvPw456")


def test_example_inventories_validate() -> None:
    lab = load_inventory(
        [ROOT / "inventory" / "lab.yaml"],
        subnets=(SubnetSettings(cidr=ipaddress.IPv4Network("10.77.0.0/24")),),
    )
    assert lab.ok, lab.problems
    assert sorted(lab.machines) == ["lab-cp1", "lab-w1", "lab-w2"]
    dc = load_inventory(
        [ROOT / "inventory" / "example-datacenter"],
        subnets=(
            SubnetSettings(cidr=ipaddress.IPv4Network("10.10.1.0/24")),
            SubnetSettings(cidr=ipaddress.IPv4Network("10.10.2.0/24")),
        ),
    )
    assert dc.ok, dc.problems
    assert len(dc.clusters) == 2
    assert len(dc.machines) == 40
    assert any(loc.file.endswith(".csv") for loc in dc.machines.values())


def test_every_problem_reported_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    bad = """\
kind: Machine
name: m3
macs: [52:54:00:00:00:01]
ip: 10.0.0.11
cluster: nope
---
kind: Machine
name: m1
macs: [52:54:00:00:00:99]
---
kind: Machine
name: m4
macs: [zz:00:00:00:00:00]
instalDisk: /dev/sda
---
kind: Machine
name: m5
macs: [52:54:00:00:00:05]
ip: 192.168.9.9
uuid: 00000000-0000-4000-8000-000000000001
---
kind: Machine
name: m6
---
kind: Widget
name: w
"""
    write(tmp_path, "b.yaml", bad)
    inv = load_inventory([tmp_path], subnets=SUBNETS)
    text = "\n".join(inv.problems)
    b = str(tmp_path / "b.yaml")
    expected = [
        f"{b}:1: MAC 52:54:00:00:00:01 of m3 is also on m1",
        f"{b}:1: IP 10.0.0.11 of m3 is also on m1",
        f"{b}:1: machine m3 names unknown cluster 'nope'",
        f"{b}:8: duplicate Machine name 'm1'",
        f"{b}:13: Machine macs.0: not a MAC address",
        f"{b}:14: Machine instalDisk: unknown key (typo?)",
        f"{b}:16: IP 192.168.9.9 of m5 is outside every configured DHCP subnet",
        f"{b}:16: UUID 00000000-0000-4000-8000-000000000001 of m5 is also on m1",
        f"{b}:22: Machine macs: required key is missing",
        f"{b}:25: kind must be one of Cluster, Machine",
    ]
    for message in expected:
        assert message in text, f"missing {message!r} in:\n{text}"
    assert len(inv.problems) == len(expected)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", "kind: Machine\nname: a\nmacs: [1, 2\n")
    inv = load_inventory([path])
    assert len(inv.problems) == 1
    assert inv.problems[0].startswith(f"{path}:") and "YAML syntax error" in inv.problems[0]
    dup = write(tmp_path, "y.yaml", "kind: Machine\nname: a\nname: b\nmacs: [52:54:00:00:00:01]\n")
    assert load_inventory([dup]).problems == [f"{dup}:3: duplicate key 'name'"]


def test_csv_inventory_with_lines(tmp_path: Path) -> None:
    write(tmp_path, "c.yaml", GOOD.split("---", maxsplit=1)[0])
    write(
        tmp_path,
        "r.csv",
        "# comment line\nname,cluster,macs,ip,labels,bmc_driver,bmc_address,bmc_password\n"
        "n1,c1,52:54:00:00:10:01;52:54:00:00:10:02,10.0.0.51,rack=r9;pos=1,ipmi,10.1.1.1,pw\n"
        "n2,c1,bogus,10.0.0.52,,,,\n",
    )
    inv = load_inventory([tmp_path], subnets=SUBNETS)
    assert inv.problems == [f"{tmp_path / 'r.csv'}:4: Machine macs.0: not a MAC address: 'bogus'"]
    assert inv.machines["n1"].spec.macs == ("52:54:00:00:10:01", "52:54:00:00:10:02")
    assert inv.machines["n1"].spec.labels == {"rack": "r9", "pos": "1"}
    assert inv.machines["n1"].spec.bmc is not None and inv.machines["n1"].line == 3


async def test_apply_is_idempotent_and_diffs_fields(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    plan = await apply_inventory(store, load_inventory([path]))
    assert plan.counts() == {"added": 3, "changed": 0, "removed": 0}
    assert (await apply_inventory(store, load_inventory([path]))).empty
    write(tmp_path, "a.yaml", GOOD.replace("rack: r1", "rack: r2").replace("InlinePw123", "NewPw"))
    plan = await apply_inventory(store, load_inventory([path]))
    [change] = plan.changes
    assert change.action == "changed" and change.name == "m1"
    fields = {f[0]: (f[1], f[2]) for f in change.fields}
    assert fields["labels"] == ({"rack": "r1"}, {"rack": "r2"})
    assert fields["bmc.password"] == ("(hidden)", "(hidden)")
    assert "NewPw" not in repr(plan)
    assert await store.bmc_password("m1") == "NewPw"
    assert await store.bmc_password("m2") == "EnvPw456"


async def test_dry_run_writes_nothing(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    plan = await apply_inventory(store, load_inventory([path]), dry_run=True)
    assert plan.counts()["added"] == 3
    assert await store.list_machines() == []


async def test_invalid_or_conflicting_files_change_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    await apply_inventory(store, load_inventory([path]))
    before = await store.list_machines()
    # an invalid file
    write(tmp_path, "a.yaml", GOOD.replace("52-54-00-00-00-01", "nope"))
    with pytest.raises(InventoryConflictError):
        await apply_inventory(store, load_inventory([path]))
    # a missing secret reference
    write(tmp_path, "a.yaml", GOOD.replace("rack: r1", "rack: r7"))
    monkeypatch.delenv("PV_TEST_BMC_PW")
    with pytest.raises(InventoryConflictError) as info:
        await apply_inventory(store, load_inventory([path]))
    assert "PV_TEST_BMC_PW is not set" in str(info.value) and f"{path}:" in str(info.value)
    monkeypatch.setenv("PV_TEST_BMC_PW", "EnvPw456")
    # a file that gives m1's MAC to a new machine while m1 stays in the database
    other = write(tmp_path / "..", "other.yaml", "kind: Machine\nname: z9\nmacs: [52:54:00:00:00:01]\n")
    with pytest.raises(InventoryConflictError) as info:
        await apply_inventory(store, load_inventory([other]))
    assert "belongs to machine m1" in str(info.value)
    assert await store.list_machines() == before


async def test_prune_and_mac_swap(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    await apply_inventory(store, load_inventory([path]))
    swapped = (
        GOOD.replace("52-54-00-00-00-01", "TMP")
        .replace("5254.0000.0002", "52:54:00:00:00:01")
        .replace("TMP", "52:54:00:00:00:02")
    )
    write(tmp_path, "a.yaml", swapped)
    plan = await apply_inventory(store, load_inventory([path]))
    assert {c.name for c in plan.changes} == {"m1", "m2"}
    assert (await store.get_machine("m1")).macs == ("52:54:00:00:00:02",)  # type: ignore[union-attr]
    # m1's old MAC is on m2 now: a file listing m1 with it, without m2, is refused...
    write(tmp_path, "a.yaml", GOOD.split("---\nkind: Machine\nname: m2", maxsplit=1)[0])
    with pytest.raises(InventoryConflictError, match="belongs to machine m2"):
        await apply_inventory(store, load_inventory([path]))
    # ...while the swapped file without m2 applies, and without --prune m2 stays
    write(tmp_path, "a.yaml", swapped.split("---\nkind: Machine\nname: m2")[0])
    assert (await apply_inventory(store, load_inventory([path]))).empty
    plan = await apply_inventory(store, load_inventory([path]), prune=True)
    assert [(c.action, c.name) for c in plan.changes] == [("removed", "m2")]
    assert [m.name for m in await store.list_machines()] == ["m1"]


async def test_export_round_trips(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    await apply_inventory(store, load_inventory([path]))
    text = await export_inventory(store)
    assert "InlinePw123" not in text and "EnvPw456" not in text
    assert "env:PV_TEST_BMC_PW" in text and "enc:" in text
    out = write(tmp_path, "exported.yaml", text)
    inv = load_inventory([out])
    assert inv.ok, inv.problems
    assert (await apply_inventory(store, inv)).empty
    assert await store.bmc_password("m1") == "InlinePw123"


async def test_example_datacenter_applies_and_round_trips(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "bmc.pass"
    secret.write_text("r1-pass\n")
    monkeypatch.setenv("R2_BMC_PASSWORD", "r2-pass")
    text = (
        (ROOT / "inventory" / "example-datacenter" / "r1.yaml")
        .read_text()
        .replace("/etc/provisioner/bmc-r1.pass", str(secret))
    )
    dc = tmp_path / "dc"
    dc.mkdir()
    write(dc, "r1.yaml", text)
    for name in ("clusters.yaml", "r2.csv"):
        write(dc, name, (ROOT / "inventory" / "example-datacenter" / name).read_text())
    plan = await apply_inventory(sqlite_store, load_inventory([dc]))
    assert plan.counts()["added"] == 42
    assert await sqlite_store.bmc_password("r1-n05") == "r1-pass"
    exported = write(tmp_path, "export.yaml", await export_inventory(sqlite_store))
    assert (await apply_inventory(sqlite_store, load_inventory([exported]))).empty


async def test_no_plaintext_secret_in_sqlite_file(sqlite_store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    await apply_inventory(sqlite_store, load_inventory([path]))
    await sqlite_store.put_cluster_secrets("c1", b"trustdinfo: {token: SecretClusterToken}")
    await sqlite_store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("provisioner.db*"))
    assert raw, "database file not found"
    for secret in (b"InlinePw123", b"EnvPw456", b"SecretClusterToken"):
        assert secret not in raw
