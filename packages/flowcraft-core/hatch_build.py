"""Build hook: put Mermaid's browser bundle into ``flowcraft.core._ui`` (``flowcraft ui``).

``flowcraft ui`` draws run diagrams with Mermaid in the browser and must work offline on
127.0.0.1, so the wheel carries Mermaid's single-file bundle (``dist/mermaid.min.js``, about
5.7 MB, 1.6 MB compressed) and its MIT license. They are not committed: this hook fetches the
pinned npm tarball from registry.npmjs.org once, checks its sha512 against the integrity npm
publishes for it, and unpacks the two files into ``src/flowcraft/core/_ui/static/vendor/``
(git-ignored). Wheels, sdists and editable installs all run it; an sdist carries the files, so
a wheel built from an sdist needs no network. Offline, point ``FLOWCRAFT_MERMAID_TGZ`` at a
copy of the same tarball (``npm pack mermaid@VERSION``); any other file is refused.

Only the standard library: it runs in hatchling's isolated build environment.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MERMAID_VERSION = "12.4.0"
MERMAID_INTEGRITY = (  # the tarball's `dist.integrity` in the npm registry
    "sha512-j2gvsGUFeS/53WdYLl9H5G2YtMZX9G/PlCvV3E5Pf4j5XSnK19D"
    "wazU6wki7OTcKeYKed7+qujRDLhy8NV2zBg=="
)
MERMAID_URL = f"https://registry.npmjs.org/mermaid/-/mermaid-{MERMAID_VERSION}.tgz"
VENDOR = Path("src/flowcraft/core/_ui/static/vendor")
#: Tarball member -> file in VENDOR.
FILES = {"package/dist/mermaid.min.js": "mermaid.min.js", "package/LICENSE": "mermaid.LICENSE"}
STAMP = "mermaid.version"


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Fetch Mermaid's bundle unless the pinned version is there already."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Before a build: unpack the pinned bundle into the source tree if it is not there."""
        vendor = Path(self.root) / VENDOR
        if _present(vendor):
            return
        tarball = _tarball()
        _check(tarball)
        _unpack(tarball, vendor)


def _present(vendor: Path) -> bool:
    stamp = vendor / STAMP
    names = [vendor / name for name in FILES.values()]
    current = stamp.is_file() and stamp.read_text().strip() == MERMAID_VERSION
    return current and all(path.is_file() for path in names)


def _tarball() -> bytes:
    local = os.environ.get("FLOWCRAFT_MERMAID_TGZ")
    if local:
        return Path(local).read_bytes()
    try:
        with urllib.request.urlopen(MERMAID_URL, timeout=120) as response:
            return bytes(response.read())
    except OSError as exc:
        msg = (
            f"flowcraft-core build: cannot fetch Mermaid {MERMAID_VERSION} for `flowcraft ui` "
            f"from {MERMAID_URL} ({exc}); offline, set FLOWCRAFT_MERMAID_TGZ to that tarball"
        )
        raise RuntimeError(msg) from exc


def _check(tarball: bytes) -> None:
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != MERMAID_INTEGRITY:
        msg = f"flowcraft-core build: Mermaid tarball integrity {digest} != {MERMAID_INTEGRITY}"
        raise RuntimeError(msg)


def _unpack(tarball: bytes, vendor: Path) -> None:
    vendor.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member, name in FILES.items():
            extracted = archive.extractfile(member)
            if extracted is None:
                msg = f"flowcraft-core build: {member} missing from the Mermaid tarball"
                raise RuntimeError(msg)
            (vendor / name).write_bytes(extracted.read())
    (vendor / STAMP).write_text(MERMAID_VERSION + "\n")
