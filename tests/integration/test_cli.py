"""The `nexus` command: version, token minting, and one clear line for a bad setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt

import nexus


def nexus_cmd(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    return subprocess.run(
        [sys.executable, "-m", "nexus", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=60,
    )


def test_version() -> None:
    out = nexus_cmd("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"nexus {nexus.__version__}"


def test_token_uses_the_dev_secret_of_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "dev-secret").write_text("a-development-secret-of-the-server-0123456789")
    out = nexus_cmd(
        "token",
        "--user",
        "bob",
        "--tenant",
        "t1",
        "--roles",
        "admin,member",
        "--kind",
        "agent",
        "--ttl",
        "120",
        "--data-dir",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert str((tmp_path / "dev-secret").resolve()) in out.stderr  # says which secret
    secret = (tmp_path / "dev-secret").read_text()
    claims = jwt.decode(
        out.stdout.strip(), secret, algorithms=["HS256"], audience="nexus", issuer="nexus"
    )
    assert (claims["sub"], claims["tenant"], claims["roles"], claims["kind"]) == (
        "bob",
        "t1",
        ["admin", "member"],
        "agent",
    )
    assert claims["exp"] - claims["iat"] == 120


def test_token_never_invents_a_secret(tmp_path: Path) -> None:
    """Run from the wrong directory, it used to create ./data/dev-secret and mint tokens the
    server refused; now it names the file it looked for and stops."""
    out = nexus_cmd("token", "--user", "bob", "--tenant", "t1", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert str(tmp_path / "data" / "dev-secret") in out.stderr
    assert not (tmp_path / "data").exists()


def test_the_server_creates_the_dev_secret_the_token_command_then_uses(tmp_path: Path) -> None:
    from .harness import start_server

    server = start_server(tmp_path, auth_secret=None, auth_issuer=None, auth_audience=None)
    try:
        assert oct((tmp_path / "dev-secret").stat().st_mode & 0o777) == "0o600"
        out = nexus_cmd("token", "--user", "bob", "--tenant", "t1", "--data-dir", str(tmp_path))
        assert out.returncode == 0, out.stderr
        secret = (tmp_path / "dev-secret").read_text()
        jwt.decode(
            out.stdout.strip(), secret, algorithms=["HS256"], audience="nexus", issuer="nexus"
        )
    finally:
        assert server.stop() == 0


def test_token_refuses_names_the_server_would_refuse(tmp_path: Path) -> None:
    (tmp_path / "dev-secret").write_text("a-development-secret-of-the-server-0123456789")
    for flag, value in (("--user", "bad user"), ("--tenant", "t/1"), ("--user", "x" * 129)):
        args = {"--user": "ok", "--tenant": "ok", flag: value}
        out = nexus_cmd(
            "token", *[a for kv in args.items() for a in kv], "--data-dir", str(tmp_path)
        )
        assert out.returncode == 2 and flag in out.stderr and out.stdout == "", out


def test_serve_help_documents_every_setting() -> None:
    from nexus.config import FIELD_DOCS

    out = nexus_cmd("serve", "--help")
    assert out.returncode == 0
    flat = " ".join(out.stdout.split())  # argparse wraps lines
    for name, doc in FIELD_DOCS.items():
        assert f"--{name.replace('_', '-')}" in flat
        assert " ".join(doc.split()) in flat, name
    assert "(default: 65536)" in flat and "(default: HS256)" in flat


def test_every_setting_is_in_the_configuration_reference() -> None:
    from nexus.config import FIELD_DOCS

    reference = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    missing = [name for name in FIELD_DOCS if f"| `{name}` |" not in reference]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_bad_settings_stop_the_start_with_one_line(tmp_path: Path) -> None:
    cases = [
        (["serve", "--port", "eighty"], {}, "port"),
        (["serve"], {"NEXUS_MAX_FRAME_BYTES": "-1"}, "max_frame_bytes"),
        (["serve"], {"NEXUS_NO_SUCH_THING": "1"}, "NEXUS_NO_SUCH_THING"),
        (["serve", "--auth-algorithms", "HS256,RS256"], {}, "auth_algorithms"),
    ]
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[auth]\nissuer = 42\n")
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
    config.write_text(
        f'data_dir = "{tmp_path}"\n[auth]\nissuer = "from-file"\n'
        'secret = "a-configured-secret-0123456789-abcdef"\n'
    )
    out = nexus_cmd("token", "--user", "a", "--tenant", "t", "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert jwt.decode(out.stdout.strip(), options={"verify_signature": False})["iss"] == "from-file"


async def test_probes_are_quiet_and_client_faults_are_not_errors(tmp_path: Path) -> None:
    """At log level info a health probe logs nothing, and a client's protocol fault (an
    oversized frame, 1009) is not logged as a server ERROR."""
    import httpx

    from .harness import start_server
    from .rawws import RawWebSocket, build_frame

    server = start_server(
        tmp_path, log_level="info", max_frame_bytes=4096, max_body_bytes=2048, max_meta_bytes=1024
    )
    try:
        async with httpx.AsyncClient() as http:
            for path in ("/healthz", "/readyz", "/healthz"):
                assert (await http.get(f"{server.http}{path}")).status_code == 200
        ws = await RawWebSocket.connect(server.port)
        await ws.send_raw(build_frame(0x1, b" " * 5000))
        code, _ = await ws.expect_close()
        assert code == 1009
    finally:
        assert server.stop() == 0
    log = "".join(server.output)
    assert "New connection accepted" not in log and "Disconnected" not in log, log
    assert " ERROR " not in log and '"level": "error"' not in log, log
