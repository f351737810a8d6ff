"""Where a backend's settings come from: the command line, the environment, a config file.

Every command that talks to a backend (``worker``, ``reconcile``, ``start``, ``status``,
``result``, ``cancel``, ``resume``, ``runs``, ``conformance``) resolves its backend name,
namespace and options here, highest first:

1. the command line: ``--backend``, ``--namespace``, ``--option KEY=VALUE``;
2. the environment: ``FLOWCRAFT_BACKEND``, ``FLOWCRAFT_NAMESPACE``, and the variables an adapter
   reads for its options (``option_environment`` on its factory, e.g. ``FLOWCRAFT_RABBITMQ_URL``
   for ``amqp_url``): a variable that is set hides the config file's value of that option;
3. the config file: ``--config FILE``, else ``$FLOWCRAFT_CONFIG``, else ``./flowcraft.toml``
   when it exists (TOML)::

       [backend]
       name = "rabbitmq"
       namespace = "orders"

       [backend.options]
       amqp_url = "amqp://flowcraft:flowcraft@127.0.0.1:15673/%2F"

4. the defaults: namespace ``flowcraft``, the adapter's own defaults for its options.

Unknown keys and wrong types in the file are usage errors naming the file and the key (and its
line where it can be found). ``parse_config`` and ``resolve`` are pure; ``config_path`` and
``read_config`` do the file-system part.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flowcraft.core.cli._common import UsageError

CONFIG_ENV = "FLOWCRAFT_CONFIG"
BACKEND_ENV = "FLOWCRAFT_BACKEND"
NAMESPACE_ENV = "FLOWCRAFT_NAMESPACE"
DEFAULT_FILE = "flowcraft.toml"
DEFAULT_NAMESPACE = "flowcraft"

_BACKEND_KEYS = ("name", "namespace", "options")

HELP_EPILOG = f"""\
Backend settings, highest first: the command line (--backend, --namespace, --option), the
environment ({BACKEND_ENV}, {NAMESPACE_ENV}, the adapter's own variables such as
FLOWCRAFT_RABBITMQ_URL), the config file, the defaults (namespace "{DEFAULT_NAMESPACE}"). The
config file is --config FILE, else ${CONFIG_ENV}, else ./{DEFAULT_FILE} if it exists:

  [backend]
  name = "rabbitmq"
  namespace = "orders"

  [backend.options]
  amqp_url = "amqp://user:password@host:5672/%2F"
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSettings:
    """What a config file says (``None``: the file does not say)."""

    path: str
    name: str | None = None
    namespace: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendSettings:
    """The resolved backend: its name, namespace and the options its factory is given."""

    name: str
    namespace: str
    options: Mapping[str, str]
    file: str | None = None
    from_file: frozenset[str] = frozenset()
    """The options whose values came from the config file ``file``."""

    def blame(self) -> str:
        """Where the file's options came from, for an error about options (or "")."""
        if not self.from_file:
            return ""
        keys = ", ".join(sorted(self.from_file))
        return f" (set in the config file {self.file} under [backend.options]: {keys})"


def config_path(given: str | None, environ: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file to read: ``--config``, else ``$FLOWCRAFT_CONFIG``, else ./flowcraft.toml.

    A named file must exist (``read_config`` says so); ./flowcraft.toml only when present.
    """
    if given:
        return Path(given)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    found = cwd / DEFAULT_FILE
    return found if found.is_file() else None


def read_config(path: Path) -> FileSettings:
    """Read and check the config file.

    Raises:
        UsageError: It cannot be read, is not TOML, or has unknown keys or wrong types.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: the config file is not UTF-8 text") from None
    return parse_config(text, str(path))


def parse_config(text: str, path: str) -> FileSettings:
    """Check a config file's text (pure).

    Raises:
        UsageError: Not TOML, an unknown key or a value of the wrong type.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    _only_keys(data, ("backend",), "", path, text)
    backend = data.get("backend", {})
    if not isinstance(backend, dict):
        raise _error(path, text, "backend", f"must be a table, not {_kind(backend)}")
    _only_keys(backend, _BACKEND_KEYS, "backend.", path, text)
    options = backend.get("options", {})
    if not isinstance(options, dict):
        raise _error(path, text, "backend.options", f"must be a table, not {_kind(options)}")
    return FileSettings(
        path=path,
        name=_string(backend, "name", path, text),
        namespace=_string(backend, "namespace", path, text),
        options={key: _option(key, value, path, text) for key, value in options.items()},
    )


def choose_name(name: str | None, environ: Mapping[str, str], file: FileSettings | None) -> str:
    """The backend's name: ``--backend``, else ``$FLOWCRAFT_BACKEND``, else the file's (pure).

    Raises:
        UsageError: No layer names a backend.
    """
    chosen = name or environ.get(BACKEND_ENV) or (file.name if file else None)
    if not chosen:
        raise UsageError(
            f"no backend: give --backend NAME, set {BACKEND_ENV}, or name one in a config "
            f"file ([backend] name = ...; --config FILE, ${CONFIG_ENV} or ./{DEFAULT_FILE})"
        )
    return chosen


def resolve(
    *,
    name: str | None,
    namespace: str | None,
    options: Mapping[str, str],
    environ: Mapping[str, str],
    file: FileSettings | None,
    option_environment: Mapping[str, str] | None = None,
) -> BackendSettings:
    """Merge the command line (``name``, ``namespace``, ``options``), environment and file (pure).

    ``option_environment``: option -> the variable the adapter reads it from (the file's value
    of an option whose variable is set is left out, so the adapter reads the variable).

    Raises:
        UsageError: No layer names a backend.
    """
    chosen = choose_name(name, environ, file)
    variables = option_environment or {}
    from_file = {
        key: value
        for key, value in (file.options if file else {}).items()
        if not (key in variables and environ.get(variables[key]))
    }
    return BackendSettings(
        name=chosen,
        namespace=namespace
        or environ.get(NAMESPACE_ENV)
        or (file.namespace if file and file.namespace else DEFAULT_NAMESPACE),
        options={**from_file, **options},
        file=file.path if file else None,
        from_file=frozenset(from_file) - frozenset(options),
    )


def _only_keys(
    table: Mapping[str, object], known: tuple[str, ...], prefix: str, path: str, text: str
) -> None:
    for key in table:
        if key not in known:
            listed = ", ".join(f"{prefix}{k}" for k in known)
            raise _error(path, text, f"{prefix}{key}", f"unknown key (known: {listed})")


def _string(table: Mapping[str, object], key: str, path: str, text: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problem = "must not be empty" if value == "" else f"must be a string, not {_kind(value)}"
        raise _error(path, text, f"backend.{key}", problem)
    return value


def _option(key: str, value: object, path: str, text: str) -> str:
    """An option's value as ``--option`` would give it: text (numbers and booleans written)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    problem = f"must be a string, a number or a boolean, not {_kind(value)}"
    raise _error(path, text, f"backend.options.{key}", problem)


def _kind(value: object) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}  # fmt: skip
    return kinds.get(type(value), f"a {type(value).__name__}")


def _error(path: str, text: str, key: str, problem: str) -> UsageError:
    line = _line_of(text, key)
    where = f"{path}:{line}" if line else path
    return UsageError(f"{where}: {key}: {problem}")


def _line_of(text: str, dotted: str) -> int | None:
    """The line that sets ``dotted`` (a table header or a key), when exactly one line can."""
    last = re.escape(dotted.rsplit(".", 1)[-1])
    whole = re.escape(dotted)
    pattern = re.compile(
        rf"""^\s*(\[\s*{whole}\s*\]|(["']?)({whole}|{last})\2\s*=)""", re.MULTILINE
    )
    lines = [text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)]
    return lines[0] if len(lines) == 1 else None
