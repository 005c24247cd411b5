"""The MCP client's settings and checks, without sockets: the ``[mcp.servers.NAME]``
tables (every bad field named), secrets read from files and never shown, tool names,
result flattening and caps, the agent's ``mcp`` allowlist, the ``tool.approve`` request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types
import pytest

from nexus.config import load_settings
from nexus.core.agents import AgentConfig, check
from nexus.errors import BadRequest, ConfigError
from nexus.extensions.mcp.config import parse_servers
from nexus.extensions.mcp.runner import flatten
from nexus.extensions.mcp.source import tool_name
from nexus.protocol import Decoder, ToolApprove

STDIO = {"transport": "stdio", "command": "/bin/true"}


def test_a_stdio_and_an_http_server(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("  Bearer abcdef123456 \n")
    env_secret = tmp_path / "env"
    env_secret.write_text("s3cr3t-value")
    servers = parse_servers(
        {
            "files": {
                **STDIO,
                "args": ["-x"],
                "env": {"LEVEL": "1"},
                "env_files": {"TOKEN": str(env_secret)},
                "cwd": str(tmp_path),
                "destructive": ["rm"],
                "tenants": ["acme"],
                "timeout": 5,
            },
            "web": {
                "transport": "http",
                "url": "https://mcp.example/mcp",
                "headers": {"X-Org": "o1"},
                "headers_files": {"Authorization": str(token)},
                "output_max_chars": 100_000,
            },
        }
    )
    files, web = servers["files"], servers["web"]
    assert files.args == ("-x",) and files.env == {"LEVEL": "1", "TOKEN": "s3cr3t-value"}
    assert files.destructive == {"rm"} and files.timeout == 5.0
    assert files.allows("acme") and not files.allows("globex")
    assert files.secrets == ("s3cr3t-value",)
    assert web.headers == {"X-Org": "o1", "Authorization": "Bearer abcdef123456"}
    assert web.output_max_chars == 8000  # never more than a room's tool result holds
    assert web.allows("anyone")
    assert web.secrets[0] == "Bearer abcdef123456" and "abcdef123456" in web.secrets
    for config in (files, web):
        assert "abcdef" not in repr(config) and "s3cr3t" not in repr(config)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"transport": "ftp"}, "mcp.servers.s.transport"),
        ({"transport": "stdio"}, "mcp.servers.s.command"),
        ({**STDIO, "url": "http://x"}, "mcp.servers.s.url"),  # not a stdio field
        ({**STDIO, "args": "-x"}, "mcp.servers.s.args"),
        ({**STDIO, "env": {"A-B": "1"}}, "mcp.servers.s.env.A-B"),
        ({**STDIO, "env_files": {"A": "/no/such/file"}}, "mcp.servers.s.env_files.A"),
        ({**STDIO, "cwd": "/no/such/folder"}, "mcp.servers.s.cwd"),
        ({**STDIO, "timeout": 0}, "mcp.servers.s.timeout"),
        ({**STDIO, "backoff": True}, "mcp.servers.s.backoff"),
        ({**STDIO, "output_max_chars": 1.5}, "mcp.servers.s.output_max_chars"),
        ({**STDIO, "destructive": ["", "x"]}, "mcp.servers.s.destructive"),
        ({**STDIO, "tenants": "acme"}, "mcp.servers.s.tenants"),
        ({"transport": "http"}, "mcp.servers.s.url"),
        ({"transport": "http", "url": "file:///etc/passwd"}, "mcp.servers.s.url"),
        ({"transport": "http", "url": "https://u:p@h/mcp"}, "mcp.servers.s.url"),
        ({"transport": "http", "url": "http://h", "command": "x"}, "mcp.servers.s.command"),
        ({"transport": "http", "url": "http://h", "headers": {"A": 1}}, "mcp.servers.s.headers"),
        ({"transport": "http", "url": "http://h", "headers": {"A": "x\r\nB: y"}}, "headers.A"),
        ({"transport": "http", "url": "http://h", "headers": {"A B": "x"}}, "headers.A B"),
    ],
)
def test_every_bad_field_is_named(table: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_servers({"s": table})
    assert field in str(caught.value)


def test_server_names_and_unreadable_secrets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server names"):
        parse_servers({"a.b": STDIO})
    with pytest.raises(ConfigError, match="server names"):
        parse_servers({"x" * 33: STDIO})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        parse_servers(
            {"s": {"transport": "http", "url": "http://h", "headers_files": {"A": str(empty)}}}
        )


def test_settings_keep_the_tables_whole_and_hide_their_secrets(tmp_path: Path) -> None:
    config = tmp_path / "nexus.toml"
    config.write_text(
        "[mcp]\napproval_timeout = 30\n"
        '[mcp.servers.files]\ntransport = "stdio"\ncommand = "/bin/true"\n'
        'env = {TOKEN = "inline-secret"}\n'
        '[mcp.servers.web]\ntransport = "http"\nurl = "http://h/mcp"\n'
        'headers = {Authorization = "Bearer inline"}\n'
    )
    settings = load_settings(config, environ={})
    assert settings.mcp_approval_timeout == 30.0
    assert set(settings.mcp_servers) == {"files", "web"}
    assert settings.mcp_servers["files"]["env"] == {"TOKEN": "inline-secret"}
    shown = str(settings.summary())
    assert "inline-secret" not in shown and "Bearer inline" not in shown
    env = {"NEXUS_MCP_SERVERS": '{"x": {"transport": "stdio", "command": "c"}}'}
    assert set(load_settings(None, environ=env).mcp_servers) == {"x"}
    with pytest.raises(ConfigError, match="mcp_approval_timeout"):
        load_settings(None, environ={"NEXUS_MCP_APPROVAL_TIMEOUT": "0"})


def test_tool_names_fit_the_providers_rule() -> None:
    assert tool_name("files", "read_file") == "files__read_file"
    assert tool_name("files", "fs/read.file v2") == "files__fs_read_file_v2"
    assert tool_name("files", "x" * 57) == "files__" + "x" * 57  # 64 characters
    assert tool_name("files", "x" * 58) is None


def test_results_flatten_to_capped_text() -> None:
    text = types.TextContent(type="text", text="hello")
    image = types.ImageContent(type="image", data="AAAA", mime_type="image/png")
    result = types.CallToolResult(content=[text, image])
    assert flatten(result, 1000) == "hello\n[image: image/png, not shown]"
    structured = types.CallToolResult(content=[], structured_content={"sum": 3})
    assert flatten(structured, 1000) == '{"sum":3}'
    long = types.CallToolResult(content=[types.TextContent(type="text", text="y" * 500)])
    cut = flatten(long, 200)
    assert len(cut) == 200 and cut.endswith("[output cut at 200 characters]")
    assert flatten(long, 10) == "y" * 10
    assert flatten(types.CallToolResult(content=[]), 10) == ""


def test_an_agents_allowlist_names_configured_servers_only() -> None:
    servers = {"files": None, "web": frozenset({"acme"})}

    def agent(tenant: str = "acme", **mcp: tuple[str, ...]) -> AgentConfig:
        return AgentConfig(tenant, "bot", mcp=mcp)

    check(agent(files=("read",), web=("*",)), {"offline"}, set(), servers)
    with pytest.raises(BadRequest, match=r"mcp: no MCP server named 'shell' \(configured: "):
        check(agent(shell=("run",)), {"offline"}, set(), servers)
    with pytest.raises(BadRequest, match=r"no MCP server named 'web' \(configured: files\)"):
        check(agent("globex", web=("x",)), {"offline"}, set(), servers)
    with pytest.raises(BadRequest, match="stands alone"):
        check(agent(files=("*", "read")), {"offline"}, set(), servers)
    with pytest.raises(BadRequest, match="list 1-64 tool names"):
        check(agent(files=()), {"offline"}, set(), servers)
    with pytest.raises(BadRequest, match="configured: none"):
        check(agent(files=("read",)), {"offline"}, set())
    stored = agent(files=("read", "write"))
    again = AgentConfig.from_json(stored.to_json())
    assert again == stored and again.public()["mcp"] == {"files": ["read", "write"]}
    old = b'{"tenant": "acme", "name": "bot"}'  # stored before agents had MCP servers
    assert AgentConfig.from_json(old).mcp == {}


def test_the_tool_approve_request() -> None:
    decode = Decoder().decode
    frame = b'{"type":"tool.approve","id":1,"room":"ops","approval_id":"ap_1","approve":true}'
    assert decode(frame) == ToolApprove(1, "ops", "ap_1", True)
    for bad, why in (
        (b'{"type":"tool.approve","id":1,"room":"ops","approve":true}', "approval_id"),
        (b'{"type":"tool.approve","id":1,"room":"ops","approval_id":"a"}', "approve"),
        (b'{"type":"tool.approve","room":"ops","approval_id":"a","approve":1}', "approve"),
        (b'{"type":"tool.approve","approval_id":"a","approve":true}', "room"),
        (b'{"type":"tool.approve","room":"o","approval_id":"","approve":true}', "approval_id"),
    ):
        with pytest.raises(BadRequest, match=why):
            decode(bad)
