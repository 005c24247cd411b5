"""The `nexus` command: version, token minting, and one clear line for a bad setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt

import nexus


def nexus_cmd(*args: str, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    return subprocess.run([sys.executable, "-m", "nexus", *args], capture_output=True,
                          text=True, env={**base, **(env or {})}, cwd=cwd, timeout=60)


def test_version() -> None:
    out = nexus_cmd("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"nexus {nexus.__version__}"


def test_token_uses_the_dev_secret_of_the_data_dir(tmp_path: Path) -> None:
    out = nexus_cmd("token", "--user", "bob", "--tenant", "t1", "--roles", "admin,member",
                    "--kind", "agent", "--ttl", "120", "--data-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    secret = (tmp_path / "dev-secret").read_text()
    claims = jwt.decode(out.stdout.strip(), secret, algorithms=["HS256"], audience="nexus",
                        issuer="nexus")
    assert (claims["sub"], claims["tenant"], claims["roles"], claims["kind"]) == (
        "bob", "t1", ["admin", "member"], "agent")
    assert claims["exp"] - claims["iat"] == 120
    assert oct((tmp_path / "dev-secret").stat().st_mode & 0o777) == "0o600"


def test_bad_settings_stop_the_start_with_one_line(tmp_path: Path) -> None:
    cases = [
        (["serve", "--port", "eighty"], {}, "port"),
        (["serve"], {"NEXUS_MAX_FRAME_BYTES": "-1"}, "max_frame_bytes"),
        (["serve"], {"NEXUS_NO_SUCH_THING": "1"}, "NEXUS_NO_SUCH_THING"),
        (["serve", "--auth-algorithms", "HS256,RS256"], {}, "auth_algorithms"),
    ]
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text('[auth]\nissuer = 42\n')
    cases.append((["serve", "--config", str(bad_toml)], {}, "auth_issuer"))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('colour = "blue"\n')
    cases.append((["serve", "--config", str(unknown)], {}, "colour"))
    for args, env, setting in cases:
        out = nexus_cmd(*args, "--data-dir", str(tmp_path), env=env)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and setting in lines[0], (args, out.stderr)


def test_toml_config_is_used(tmp_path: Path) -> None:
    config = tmp_path / "nexus.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[auth]\nissuer = "from-file"\n')
    out = nexus_cmd("token", "--user", "a", "--tenant", "t", "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert jwt.decode(out.stdout.strip(), options={"verify_signature": False})["iss"] == \
        "from-file"
