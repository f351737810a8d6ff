"""Backend settings: their sources and order (``cli/_config.py``: pure parts, file lookup)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flowcraft.core.cli._common import UsageError
from flowcraft.core.cli._config import (
    BackendSettings,
    FileSettings,
    config_path,
    parse_config,
    read_config,
    resolve,
)

FULL = """\
[backend]
name = "rabbitmq"
namespace = "orders"

[backend.options]
amqp_url = "amqp://file"
redis_url = "redis://file"
retries = 3
ratio = 0.5
sticky = true
"""
RABBITMQ_ENV = {"amqp_url": "FLOWCRAFT_RABBITMQ_URL", "redis_url": "FLOWCRAFT_REDIS_URL"}


def _error(text: str) -> str:
    with pytest.raises(UsageError) as caught:
        parse_config(text, "f.toml")
    return str(caught.value)


def test_a_full_file_is_read_with_option_values_as_text() -> None:
    assert parse_config(FULL, "f.toml") == FileSettings(
        path="f.toml",
        name="rabbitmq",
        namespace="orders",
        options={"amqp_url": "amqp://file", "redis_url": "redis://file", "retries": "3",
                 "ratio": "0.5", "sticky": "true"},
    )  # fmt: skip


def test_an_empty_file_says_nothing() -> None:
    assert parse_config("", "f.toml") == FileSettings(path="f.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[backnd]\nname = "x"\n', "f.toml:1: backnd: unknown key (known: backend)"),
        (
            '[backend]\nname = "x"\nnamspace = "y"\n',
            "f.toml:3: backend.namspace: unknown key "
            "(known: backend.name, backend.namespace, backend.options)",
        ),
        ("[backend]\nname = 3\n", "f.toml:2: backend.name: must be a string, not an integer"),
        ('[backend]\nnamespace = ""\n', "f.toml:2: backend.namespace: must not be empty"),
        ('backend = "rabbitmq"\n', "f.toml:1: backend: must be a table, not a string"),
        (
            '[backend]\noptions = "a=b"\n',
            "f.toml:2: backend.options: must be a table, not a string",
        ),
        (
            "[backend.options]\nhosts = [1, 2]\n",
            "f.toml:2: backend.options.hosts: must be a string, a number or a boolean, "
            "not an array",
        ),
    ],
)
def test_unknown_keys_and_wrong_types_name_the_file_line_and_key(text: str, message: str) -> None:
    assert _error(text) == message


def test_a_key_on_more_than_one_line_is_named_without_a_line() -> None:
    text = '[backend]\nname = 1\n[backend.options]\nname = "x"\n'
    assert _error(text) == "f.toml: backend.name: must be a string, not an integer"


def test_toml_syntax_errors_carry_tomllib_s_line_and_column() -> None:
    message = _error('[backend]\nname = "x\n')
    assert message.startswith("f.toml: not valid TOML: ")
    assert "(at line 2, column" in message


def test_an_unreadable_or_binary_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"missing.toml: cannot read the config file: No such"):
        read_config(tmp_path / "missing.toml")
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match=r"b.toml: the config file is not UTF-8 text"):
        read_config(binary)


def test_the_command_line_beats_the_environment_beats_the_file() -> None:
    file = parse_config(FULL, "f.toml")
    environ = {"FLOWCRAFT_BACKEND": "sqs", "FLOWCRAFT_NAMESPACE": "env-ns"}
    cli = resolve(name="memory", namespace="cli-ns", options={"amqp_url": "amqp://cli"},
                  environ=environ, file=file, option_environment=RABBITMQ_ENV)  # fmt: skip
    assert (cli.name, cli.namespace, cli.options["amqp_url"]) == ("memory", "cli-ns", "amqp://cli")
    env = resolve(name=None, namespace=None, options={}, environ=environ, file=file)
    assert (env.name, env.namespace) == ("sqs", "env-ns")
    only_file = resolve(name=None, namespace=None, options={}, environ={}, file=file)
    assert (only_file.name, only_file.namespace) == ("rabbitmq", "orders")
    assert only_file.options == file.options


def test_an_adapter_variable_that_is_set_hides_the_file_s_value_of_its_option() -> None:
    file = parse_config(FULL, "f.toml")
    settings = resolve(
        name=None,
        namespace=None,
        options={"redis_url": "redis://cli"},
        environ={"FLOWCRAFT_RABBITMQ_URL": "amqp://env", "FLOWCRAFT_REDIS_URL": ""},
        file=file,
        option_environment=RABBITMQ_ENV,
    )
    assert "amqp_url" not in settings.options  # the adapter reads FLOWCRAFT_RABBITMQ_URL
    assert settings.options["redis_url"] == "redis://cli"  # an empty variable is not set
    assert settings.from_file == frozenset({"retries", "ratio", "sticky"})
    assert settings.blame() == (
        " (set in the config file f.toml under [backend.options]: ratio, retries, sticky)"
    )


def test_the_defaults_are_the_last_layer() -> None:
    assert resolve(name="memory", namespace=None, options={}, environ={}, file=None) == (
        BackendSettings(name="memory", namespace="flowcraft", options={})
    )
    assert resolve(name="memory", namespace=None, options={}, environ={}, file=None).blame() == ""


def test_no_backend_anywhere_says_where_one_may_be_named() -> None:
    with pytest.raises(UsageError) as caught:
        resolve(name=None, namespace=None, options={}, environ={}, file=FileSettings(path="f"))
    assert str(caught.value) == (
        "no backend: give --backend NAME, set FLOWCRAFT_BACKEND, or name one in a config file "
        "([backend] name = ...; --config FILE, $FLOWCRAFT_CONFIG or ./flowcraft.toml)"
    )


def test_the_config_file_is_the_option_else_the_variable_else_the_current_directory_s(
    tmp_path: Path,
) -> None:
    environ = {"FLOWCRAFT_CONFIG": "env.toml"}
    assert config_path("given.toml", environ, tmp_path) == Path("given.toml")
    assert config_path(None, environ, tmp_path) == Path("env.toml")
    assert config_path(None, {}, tmp_path) is None
    (tmp_path / "flowcraft.toml").write_text("")
    assert config_path(None, {}, tmp_path) == tmp_path / "flowcraft.toml"
    assert config_path(None, {"FLOWCRAFT_CONFIG": ""}, tmp_path) == tmp_path / "flowcraft.toml"
