"""Settings: defaults < TOML file < NEXUS_* environment < overrides; failures name the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nexus.config import Settings, load_settings
from nexus.errors import ConfigError

SECRET = "s" * 40


def write(tmp_path: Path, text: str, name: str = "nexus.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def config_error(**kwargs: Any) -> ConfigError:
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)
    return info.value


# -- loading -----------------------------------------------------------------


def test_defaults_with_empty_environ() -> None:
    s = load_settings(environ={})
    assert s == Settings()
    assert s.host == "127.0.0.1"
    assert s.port == 8765
    assert s.auth_algorithms == ("HS256",)
    assert s.auth_secret is None
    assert s.auth_issuer == "nexus"
    assert s.auth_audience == "nexus"
    assert s.room_create_roles == ("admin", "member")
    assert s.max_body_bytes == 16384
    assert s.max_meta_bytes == 4096
    assert s.history_max_limit == 100
    assert s.log_format == "console"


def test_toml_tables_flatten(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
port = 9000
[auth]
issuer = "issuer-from-file"
audience = "aud-from-file"
algorithms = ["HS384"]
leeway = 2
[rate]
conn-per-s = 7.5
""",
    )
    s = load_settings(path, environ={})
    assert s.port == 9000
    assert s.auth_issuer == "issuer-from-file"
    assert s.auth_audience == "aud-from-file"
    assert s.auth_algorithms == ("HS384",)
    assert s.auth_leeway == 2.0
    assert isinstance(s.auth_leeway, float)
    assert s.rate_conn_per_s == 7.5  # dashes become underscores


def test_config_file_from_environ(tmp_path: Path) -> None:
    path = write(tmp_path, '[auth]\nissuer = "via-env-path"\n')
    s = load_settings(environ={"NEXUS_CONFIG": str(path)})
    assert s.auth_issuer == "via-env-path"


def test_environ_values_are_coerced() -> None:
    s = load_settings(
        environ={
            "NEXUS_PORT": " 8080 ",
            "NEXUS_AUTH_LEEWAY": "1.5",
            "NEXUS_PRINT_DEV_TOKEN": "off",
            "NEXUS_ROOM_CREATE_ROLES": "admin, owner,,",
            "NEXUS_AUTH_SECRET": SECRET,
        }
    )
    assert s.port == 8080
    assert s.auth_leeway == 1.5
    assert s.print_dev_token is False
    assert s.room_create_roles == ("admin", "owner")
    assert s.auth_secret == SECRET


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_bool_spellings(raw: str, value: bool) -> None:
    assert load_settings(environ={"NEXUS_PRINT_DEV_TOKEN": raw}).print_dev_token is value


def test_environ_ignores_other_variables() -> None:
    s = load_settings(environ={"HOME": "/root", "PORT": "1", "NEXUSPORT": "2"})
    assert s.port == 8765


def test_precedence(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
port = 1001
host = "0.0.0.0"
log_level = "debug"
[auth]
issuer = "file"
""",
    )
    environ = {"NEXUS_PORT": "1002", "NEXUS_AUTH_ISSUER": "env"}
    overrides = {"port": 1003, "log_level": None}  # None means "flag not given"
    s = load_settings(path, environ=environ, overrides=overrides)
    assert s.port == 1003  # override > environ > file
    assert s.auth_issuer == "env"  # environ > file
    assert s.host == "0.0.0.0"  # file > default
    assert s.log_level == "debug"  # a None override does not reset it
    assert s.auth_audience == "nexus"  # default

    s = load_settings(path, environ=environ)
    assert s.port == 1002
    s = load_settings(path, environ={})
    assert s.port == 1001


def test_explicit_file_beats_nexus_config(tmp_path: Path) -> None:
    a = write(tmp_path, "port = 1111\n", "a.toml")
    b = write(tmp_path, "port = 2222\n", "b.toml")
    assert load_settings(a, environ={"NEXUS_CONFIG": str(b)}).port == 1111


def test_overrides_coerce_strings() -> None:
    s = load_settings(environ={}, overrides={"port": "4321", "auth_algorithms": "HS512"})
    assert s.port == 4321
    assert s.auth_algorithms == ("HS512",)


def test_replace_and_summary_hide_secret() -> None:
    s = load_settings(environ={"NEXUS_AUTH_SECRET": SECRET})
    assert s.summary()["auth_secret"] == "***"
    assert s.replace(port=1).port == 1
    assert s.port == 8765
    providers = {"hosted": {"type": "openai", "api_key": "sk-1", "headers": {"x-org": "o-2"}}}
    shown = s.replace(ai_providers=providers).summary()["ai_providers"]["hosted"]
    assert shown["api_key"] == "***" and shown["headers"] == {"x-org": "***"}
    assert providers["hosted"]["api_key"] == "sk-1"  # the settings themselves keep the key


# -- failures name the setting -------------------------------------------------


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[auth]\nissuer = "x"\nbogus = 1\n')
    err = config_error(config_file=path)
    assert err.setting == "auth_bogus"


def test_unknown_top_level_key_in_file(tmp_path: Path) -> None:
    err = config_error(config_file=write(tmp_path, "prot = 1\n"))
    assert err.setting == "prot"


def test_unknown_nexus_env_var() -> None:
    err = config_error(environ={"NEXUS_PROT": "1"})
    assert err.setting == "NEXUS_PROT"
    assert "NEXUS_PROT" in str(err)


def test_unknown_override() -> None:
    assert config_error(overrides={"prot": 1}).setting == "prot"


@pytest.mark.parametrize("raw", ["abc", "80.5", "", "0x50"])
def test_non_integer_port_env(raw: str) -> None:
    err = config_error(environ={"NEXUS_PORT": raw})
    assert err.setting == "port"
    assert "integer" in err.problem


@pytest.mark.parametrize("toml", ["port = 80.5", 'port = "eighty"', "port = true", "port = [80]"])
def test_non_integer_port_file(tmp_path: Path, toml: str) -> None:
    err = config_error(config_file=write(tmp_path, toml + "\n"))
    assert err.setting == "port"


@pytest.mark.parametrize("port", ["-1", "65536", "100000"])
def test_port_out_of_range(port: str) -> None:
    err = config_error(environ={"NEXUS_PORT": port})
    assert err.setting == "port"
    assert port in err.problem


@pytest.mark.parametrize("port", ["0", "65535"])
def test_port_range_edges(port: str) -> None:
    assert load_settings(environ={"NEXUS_PORT": port}).port == int(port)


@pytest.mark.parametrize("name", ["rate_conn_per_s", "rate_user_per_s"])
@pytest.mark.parametrize("raw", ["-1", "0", "-0.5"])
def test_negative_or_zero_rate(name: str, raw: str) -> None:
    err = config_error(environ={f"NEXUS_{name.upper()}": raw})
    assert err.setting == name


def test_negative_burst() -> None:
    assert config_error(environ={"NEXUS_RATE_CONN_BURST": "-5"}).setting == "rate_conn_burst"


def test_non_numeric_rate() -> None:
    err = config_error(environ={"NEXUS_RATE_USER_PER_S": "fast"})
    assert err.setting == "rate_user_per_s"
    assert "number" in err.problem


def test_nan_rate_rejected() -> None:
    assert config_error(environ={"NEXUS_RATE_CONN_PER_S": "nan"}).setting == "rate_conn_per_s"


def test_nan_leeway_rejected() -> None:
    assert config_error(environ={"NEXUS_AUTH_LEEWAY": "nan"}).setting == "auth_leeway"


def test_negative_leeway() -> None:
    assert config_error(environ={"NEXUS_AUTH_LEEWAY": "-1"}).setting == "auth_leeway"


@pytest.mark.parametrize("raw", ["maybe", "2", "", "truee"])
def test_bad_bool_env(raw: str) -> None:
    err = config_error(environ={"NEXUS_PRINT_DEV_TOKEN": raw})
    assert err.setting == "print_dev_token"
    assert "boolean" in err.problem


@pytest.mark.parametrize(
    "toml", ["print_dev_token = 1", 'print_dev_token = "maybe"', "print_dev_token = [true]"]
)
def test_bad_bool_file(tmp_path: Path, toml: str) -> None:
    err = config_error(config_file=write(tmp_path, toml + "\n"))
    assert err.setting == "print_dev_token"


def test_bad_list_in_file(tmp_path: Path) -> None:
    err = config_error(config_file=write(tmp_path, '[auth]\nalgorithms = ["HS256", 1]\n'))
    assert err.setting == "auth_algorithms"


def test_mixing_hs256_and_rs256(tmp_path: Path) -> None:
    key = tmp_path / "pub.pem"
    key.write_text("not checked here", "utf-8")
    err = config_error(
        environ={"NEXUS_AUTH_ALGORITHMS": "HS256,RS256", "NEXUS_AUTH_PUBLIC_KEY_FILE": str(key)}
    )
    assert err.setting == "auth_algorithms"
    assert "mix" in err.problem


def test_unsupported_algorithm() -> None:
    err = config_error(environ={"NEXUS_AUTH_ALGORITHMS": "none"})
    assert err.setting == "auth_algorithms"


def test_empty_algorithms() -> None:
    assert config_error(environ={"NEXUS_AUTH_ALGORITHMS": " , "}).setting == "auth_algorithms"


def test_rs256_without_key_file() -> None:
    err = config_error(environ={"NEXUS_AUTH_ALGORITHMS": "RS256"})
    assert err.setting == "auth_public_key_file"


def test_rs256_with_missing_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    err = config_error(
        environ={"NEXUS_AUTH_ALGORITHMS": "RS256", "NEXUS_AUTH_PUBLIC_KEY_FILE": str(missing)}
    )
    assert err.setting == "auth_public_key_file"
    assert str(missing) in err.problem


def test_rs256_with_missing_jwks_file(tmp_path: Path) -> None:
    err = config_error(
        environ={
            "NEXUS_AUTH_ALGORITHMS": "RS256",
            "NEXUS_AUTH_JWKS_FILE": str(tmp_path / "jwks.json"),
        }
    )
    assert err.setting == "auth_jwks_file"


def test_rs256_with_existing_key_file(tmp_path: Path) -> None:
    key = tmp_path / "pub.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n", "utf-8")
    s = load_settings(
        environ={"NEXUS_AUTH_ALGORITHMS": "RS256", "NEXUS_AUTH_PUBLIC_KEY_FILE": str(key)}
    )
    assert s.auth_algorithms == ("RS256",)


def test_missing_secret_file(tmp_path: Path) -> None:
    err = config_error(environ={"NEXUS_AUTH_SECRET_FILE": str(tmp_path / "secret")})
    assert err.setting == "auth_secret_file"


@pytest.mark.parametrize("held", ["", "short\n", "  " + "x" * 31 + "  \n"])
def test_short_secret_file(tmp_path: Path, held: str) -> None:
    path = tmp_path / "secret"
    path.write_text(held, "utf-8")
    err = config_error(environ={"NEXUS_AUTH_SECRET_FILE": str(path)})
    assert err.setting == "auth_secret_file"
    assert "at least 32" in err.problem


def test_secret_file_of_32_characters_accepted(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("x" * 32 + "\n", "utf-8")
    assert load_settings(environ={"NEXUS_AUTH_SECRET_FILE": str(path)}).auth_secret_file


@pytest.mark.parametrize("secret", ["", "short", "x" * 15])
def test_short_secret(secret: str) -> None:
    err = config_error(overrides={"auth_secret": secret})
    assert err.setting == "auth_secret"
    assert "at least" in err.problem


def test_long_secret_accepted() -> None:
    assert load_settings(environ={}, overrides={"auth_secret": SECRET}).auth_secret == SECRET


@pytest.mark.parametrize("fmt", ["xml", "JSON", ""])
def test_bad_log_format(fmt: str) -> None:
    err = config_error(environ={"NEXUS_LOG_FORMAT": fmt})
    assert err.setting == "log_format"


def test_json_log_format_accepted() -> None:
    assert load_settings(environ={"NEXUS_LOG_FORMAT": "json"}).log_format == "json"


def test_bad_log_level() -> None:
    assert config_error(environ={"NEXUS_LOG_LEVEL": "loud"}).setting == "log_level"


def test_heartbeat_timeout_above_interval() -> None:
    err = config_error(environ={"NEXUS_HEARTBEAT_INTERVAL": "5", "NEXUS_HEARTBEAT_TIMEOUT": "6"})
    assert err.setting == "heartbeat_timeout"


def test_frame_smaller_than_body_plus_meta() -> None:
    err = config_error(
        environ={
            "NEXUS_MAX_FRAME_BYTES": "1000",
            "NEXUS_MAX_BODY_BYTES": "900",
            "NEXUS_MAX_META_BYTES": "200",
        }
    )
    assert err.setting == "max_frame_bytes"


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    err = config_error(config_file=missing)
    assert err.setting == "config"
    assert str(missing) in err.problem


def test_missing_config_file_via_environ(tmp_path: Path) -> None:
    err = config_error(environ={"NEXUS_CONFIG": str(tmp_path / "absent.toml")})
    assert err.setting == "config"


@pytest.mark.parametrize("text", ["port = ", "[auth\nissuer = 1", "port = 1\nport = 2\n", "= 3"])
def test_invalid_toml(tmp_path: Path, text: str) -> None:
    err = config_error(config_file=write(tmp_path, text))
    assert err.setting == "config"
    assert "not valid TOML" in err.problem


def test_config_error_message_names_setting() -> None:
    err = config_error(environ={"NEXUS_PORT": "x"})
    assert str(err).startswith("invalid setting port:")
