"""Where templates come from: the operator's override directory, then the packaged ones.

The templates operators and developers edit live in the repository's top-level `templates/`
directory. `provisioner/templates` is a symbolic link to it, so the same files are package
data: setuptools follows the link when it builds the wheel, and `importlib.resources` finds
them in a source checkout, an editable install and an installed wheel alike. Nothing here
reads a path relative to the source tree.

An operator may set `http.templates_dir`: a file there, under the same relative name
(`ipxe/boot.ipxe.j2`), replaces the packaged one; any template it lacks comes from the
package. The override directory is read on every load whose file changed (Jinja's
`uptodate` check), so an edited template takes effect without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

import jinja2

__all__ = ["PACKAGE_TEMPLATES", "TemplateLoader", "TemplatesDirError", "packaged_templates"]

PACKAGE_TEMPLATES = "templates"
"""The package-data directory inside `provisioner` (the link to the top-level `templates/`)."""


class TemplatesDirError(Exception):
    """The override directory is unusable; the message names the setting."""


def packaged_templates() -> Traversable:
    """The packaged template tree, wherever the package is installed."""
    return resources.files("provisioner").joinpath(PACKAGE_TEMPLATES)


def _parts(name: str) -> tuple[str, ...]:
    # Template names are ours (e.g. "boot.ipxe.j2"), never a client's; still, refuse
    # anything that could climb out of the template tree.
    parts = PurePosixPath(name).parts
    if not parts or any(part in {"", ".", ".."} for part in parts) or name.startswith("/"):
        raise jinja2.TemplateNotFound(name)
    return parts


class TemplateLoader(jinja2.BaseLoader):
    """Loads `<subdir>/<name>` from `override` if it has that file, else from the package."""

    def __init__(self, subdir: str, override: Path | None = None) -> None:
        self.subdir = subdir
        self.override = override
        if override is not None and not override.is_dir():
            msg = f"http.templates_dir: {override} is not a directory"
            raise TemplatesDirError(msg)

    def get_source(
        self,
        environment: jinja2.Environment,  # noqa: ARG002 - Jinja's signature
        template: str,
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        """Jinja's loader hook: (source, file name or None, up-to-date check or None)."""
        parts = (self.subdir, *_parts(template))
        if self.override is not None:
            path = self.override.joinpath(*parts)
            if path.is_file():
                mtime = path.stat().st_mtime_ns
                source = path.read_text(encoding="utf-8")

                def uptodate() -> bool:
                    try:
                        return path.stat().st_mtime_ns == mtime
                    except OSError:
                        return False

                return source, str(path), uptodate
        resource = packaged_templates().joinpath(*parts)
        if not resource.is_file():
            raise jinja2.TemplateNotFound(template)
        # Packaged files do not change while we run: always up to date.
        return resource.read_text(encoding="utf-8"), None, lambda: True

    def list_templates(self) -> list[str]:
        """Every template name this loader can serve (packaged and overridden)."""
        names = {
            entry.name for entry in packaged_templates().joinpath(self.subdir).iterdir() if entry.is_file()
        }
        if self.override is not None and (self.override / self.subdir).is_dir():
            names |= {p.name for p in (self.override / self.subdir).iterdir() if p.is_file()}
        return sorted(names)
