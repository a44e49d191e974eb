"""Image Factory schematic IDs: the factory's canonical marshalling, hashed.

Known pairs: tests/data/imagefactory/README.md (origin: siderolabs/image-factory
pkg/schematic/schematic_test.go at v1.5.0, and the published iscsi/util-linux schematic).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli import cli
from provisioner.talos.schematic import SchematicError, parse_schematic, schematic_id_of
from provisioner.web.download import DownloadError, schematic_id

DEFAULT = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
KNOWN = [
    ("customization: {}\n", DEFAULT),
    ("{}", DEFAULT),
    ('customization: {"extraKernelArgs": []}', DEFAULT),
    (
        (
            "customization:\n    systemExtensions:\n        officialExtensions:\n"
            "            - siderolabs/iscsi-tools\n            - siderolabs/util-linux-tools\n"
        ),
        "613e1592b2da41ae5e265e8789429f22e121aab91cb4deb6bc3c0b6262961245",
    ),
    (
        '{"customization": {"extraKernelArgs": ["noapic", "nolapic"]}}',
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    (
        '{"customization": {"meta": [{"key": 10, "value": "foo"}], "extraKernelArgs": [], "systemExtensions": {}}}',
        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
    ),
    (
        '{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}, "customization": {}}',
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    (
        '{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}',
        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
    ),
    (
        '{"customization":{"diskImage": {"sectorSize": 4096}}}',
        "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea",
    ),
]

# One schematic (kernel args, META values, system extensions), written three ways.
CANONICAL = """\
customization:
    extraKernelArgs:
        - console=ttyS0
        - net.ifnames=0
    meta:
        - key: 10
          value: foo
        - key: 12
          value: '{"externalIPs": ["1.2.3.4"]}'
    systemExtensions:
        officialExtensions:
            - siderolabs/intel-ucode
"""
COMMENTED = """\
# rack r1 nodes: serial console, classic NIC names
customization:
  systemExtensions: {officialExtensions: [siderolabs/intel-ucode]}   # microcode
  meta:
  - {value: foo, key: 0x0a}
  - key: 12
    value: '{"externalIPs": ["1.2.3.4"]}'
  extraKernelArgs: [console=ttyS0, "net.ifnames=0"]
  diskImage: {}
overlay: {}
"""
AS_JSON = (
    '{"overlay": {}, "customization": {"meta": [{"key": 10, "value": "foo"}, '
    '{"key": 12, "value": "{\\"externalIPs\\": [\\"1.2.3.4\\"]}"}], '
    '"systemExtensions": {"officialExtensions": ["siderolabs/intel-ucode"]}, '
    '"extraKernelArgs": ["console=ttyS0", "net.ifnames=0"], "secureboot": {}}}'
)


@pytest.mark.parametrize(("text", "expected"), KNOWN)
def test_known_schematic_ids(text: str, expected: str) -> None:
    assert schematic_id_of(text) == expected


def test_default_id_is_the_sha256_of_its_canonical_yaml() -> None:
    schematic = parse_schematic("# nothing customised\ncustomization:\n   extraKernelArgs: []\n")
    assert schematic.canonical == "customization: {}\n"
    assert hashlib.sha256(b"customization: {}\n").hexdigest() == schematic.id == DEFAULT


def test_one_schematic_written_three_ways_has_one_id() -> None:
    ids = {schematic_id_of(text) for text in (CANONICAL, COMMENTED, AS_JSON)}
    assert ids == {hashlib.sha256(CANONICAL.encode()).hexdigest()}
    assert parse_schematic(COMMENTED).canonical == CANONICAL
    # The bytes differ, so hashing the file (the old behaviour) gave three IDs.
    assert len({hashlib.sha256(t.encode()).hexdigest() for t in (CANONICAL, COMMENTED, AS_JSON)}) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "customization:\n  extraKernelArgs: [a]\n  systemExtension: {}\n",
            "s.yaml:3: customization.systemExtension: unknown key",
        ),
        ("customisation: {}\n", "s.yaml:1: customisation: unknown key"),
        (
            "customization:\n  meta:\n    - key: 300\n      value: x\n",
            "s.yaml:3: customization.meta.0.key: expected an integer 0..255",
        ),
        (
            "customization:\n  bootloader: lilo\n",
            "s.yaml:2: customization.bootloader: unknown bootloader 'lilo'",
        ),
        (
            "customization:\n  secureboot:\n    includeWellKnownCertificates: maybe\n",
            "s.yaml:3: customization.secureboot.includeWellKnownCertificates: expected true or false",
        ),
    ],
)
def test_what_the_factory_refuses_names_file_and_line(text: str, message: str) -> None:
    with pytest.raises(SchematicError) as caught:
        parse_schematic(text, "s.yaml")
    assert str(caught.value).startswith(message)


def test_assets_import_uses_the_factory_id(tmp_path: Path) -> None:
    good = tmp_path / "schematic.yaml"
    good.write_text(COMMENTED)
    assert schematic_id(str(good)) == hashlib.sha256(CANONICAL.encode()).hexdigest()
    bad = tmp_path / "bad.yaml"
    bad.write_text("customization:\n  extraKernelArg: [x]\n")
    with pytest.raises(DownloadError, match=f"{bad}:2: customization.extraKernelArg: unknown key"):
        schematic_id(str(bad))
    settings = tmp_path / "provisioner.toml"
    settings.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    args = ["--config", str(settings), "assets", "import", "s", "--talos-version", "v1.13.0", "--schematic"]
    result = CliRunner().invoke(cli, [*args, str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:2: customization.extraKernelArg: unknown key" in result.output
