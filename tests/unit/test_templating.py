"""Templates come from the package (importlib.resources), an operator directory overrides them."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2
import pytest

from provisioner.settings import SettingsError, load_settings
from provisioner.templating import TemplateLoader, TemplatesDirError, packaged_templates
from provisioner.web.ipxe import IpxeRenderer

BASE = "http://10.77.0.1:8080"
REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_packaged_templates_are_the_top_level_directory() -> None:
    # provisioner/templates is the link to templates/: one place to edit, shipped as package data.
    for path in sorted((REPO_TEMPLATES / "ipxe").glob("*.j2")):
        packaged = packaged_templates().joinpath("ipxe", path.name)
        assert packaged.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_packaged_boot_script_renders() -> None:
    text = IpxeRenderer(BASE).boot()
    assert text.startswith("#!ipxe\n")
    assert f"{BASE}/ipxe?" in text


def test_override_replaces_one_template_and_keeps_the_others(tmp_path: Path) -> None:
    (tmp_path / "ipxe").mkdir()
    (tmp_path / "ipxe" / "boot.ipxe.j2").write_text("#!ipxe\necho site {{ base_url }}\n")
    renderer = IpxeRenderer(BASE, tmp_path)
    assert renderer.boot() == f"#!ipxe\necho site {BASE}\n"
    # hold.ipxe.j2 is not in the override directory: the packaged one is used.
    assert renderer.hold(machine="r1-n1", reason="state-Provisioned") == IpxeRenderer(BASE).hold(
        machine="r1-n1", reason="state-Provisioned"
    )


def test_an_edited_override_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    (tmp_path / "ipxe").mkdir()
    boot = tmp_path / "ipxe" / "boot.ipxe.j2"
    boot.write_text("#!ipxe\necho one\n")
    renderer = IpxeRenderer(BASE, tmp_path)
    assert renderer.boot() == "#!ipxe\necho one\n"
    boot.write_text("#!ipxe\necho two\n")
    stat = boot.stat()
    os.utime(boot, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert renderer.boot() == "#!ipxe\necho two\n"
    boot.unlink()  # gone again: back to the packaged template
    assert renderer.boot() == IpxeRenderer(BASE).boot()


def test_override_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(TemplatesDirError, match=r"http\.templates_dir"):
        TemplateLoader("ipxe", tmp_path / "missing")


def test_settings_name_the_key_of_a_missing_templates_dir(tmp_path: Path) -> None:
    config = tmp_path / "provisioner.toml"
    config.write_text(f'[http]\ntemplates_dir = "{tmp_path / "nope"}"\n')
    with pytest.raises(SettingsError, match=r"http\.templates_dir '[^']*/nope': .*not a directory"):
        load_settings(config, environ={})
    (tmp_path / "nope").mkdir()
    assert load_settings(config, environ={}).http.templates_dir == tmp_path / "nope"
    env = {"PROVISIONER_HTTP_TEMPLATES_DIR": str(tmp_path)}
    assert load_settings(None, environ=env).http.templates_dir == tmp_path


@pytest.mark.parametrize("name", ["../lab/domain.xml.j2", "/etc/passwd", "a/../../x", ""])
def test_names_cannot_leave_the_template_tree(name: str) -> None:
    env = jinja2.Environment(loader=TemplateLoader("ipxe"), autoescape=True)
    with pytest.raises(jinja2.TemplateNotFound):
        env.get_template(name)


def test_unknown_template_is_not_found(tmp_path: Path) -> None:
    env = jinja2.Environment(loader=TemplateLoader("ipxe", tmp_path), autoescape=True)
    with pytest.raises(jinja2.TemplateNotFound):
        env.get_template("nope.ipxe.j2")


def test_list_templates_merges_package_and_override(tmp_path: Path) -> None:
    packaged = sorted(p.name for p in (REPO_TEMPLATES / "ipxe").glob("*.j2"))
    assert TemplateLoader("ipxe").list_templates() == packaged
    assert TemplateLoader("ipxe", tmp_path).list_templates() == packaged  # no ipxe/ subdirectory
    (tmp_path / "ipxe").mkdir()
    (tmp_path / "ipxe" / "site.ipxe.j2").write_text("#!ipxe\n")
    assert TemplateLoader("ipxe", tmp_path).list_templates() == sorted([*packaged, "site.ipxe.j2"])
