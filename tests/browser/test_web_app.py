"""The web app in a real browser against a real server: two people chat, one goes offline
and catches up in order, an agent reply streams in, tasks, search, the admin view with a
forced disconnect, and a phone-sized screen. Screenshots go to build/test-artifacts/browser/.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from integration.harness import ServerProcess, start_server

from .conftest import ARTIFACTS, app_url, token

ADMIN = token("ada", roles=("admin", "member"))
ALICE = token("alice", roles=("member",))
BOB = token("bob", roles=("member",))
_rooms = itertools.count()
TIMEOUT_MS = 10_000


def fresh_room(prefix: str) -> str:
    return f"{prefix}-{next(_rooms)}"


def http(server: ServerProcess, tok: str = ADMIN) -> httpx.Client:
    return httpx.Client(base_url=server.api, headers={"Authorization": f"Bearer {tok}"}, timeout=10)


@contextmanager
def signed_in(
    browser: Any, server: ServerProcess, tok: str, room: str | None = None, **context: Any
) -> Iterator[Any]:
    """A page of its own browser context, signed in (and in ``room`` when given); fails
    the test if the page throws an uncaught error."""
    ctx = browser.new_context(**context)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(app_url(server, tok, room))
    page.wait_for_selector("#conn[data-state=open]")
    if room:
        page.wait_for_selector(f"#room-title:text-is('# {room}')")
        page.wait_for_selector("#presence li")
    try:
        yield page
    finally:
        ctx.close()
    assert not errors, errors


def bodies(page: Any) -> list[str]:
    """The bodies of the human messages shown, top to bottom."""
    return page.eval_on_selector_all(
        "#messages li.msg:not(.system):not(.reply) .body", "els => els.map(e => e.textContent)"
    )


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def send(page: Any, text: str) -> None:
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")


def test_two_people_chat_with_edits_deletes_presence_and_typing(
    browser: Any, server: ServerProcess
) -> None:
    room = fresh_room("chat")
    with signed_in(browser, server, ALICE) as alice:
        alice.fill("#room-input", room)
        alice.press("#room-input", "Enter")  # creates the room
        alice.wait_for_selector(f"#room-title:text-is('# {room}')")
        with signed_in(browser, server, BOB, room) as bob:
            # presence: each sees the other online
            alice.wait_for_selector("#presence li:has-text('bob')")
            assert "alice" in bob.inner_text("#presence")

            send(alice, "hi bob")
            bob.wait_for_selector("#messages .msg:has-text('hi bob')")
            bob.type("#composer-input", "hel")  # typing indicator on alice's side
            alice.wait_for_selector("#typing:has-text('bob is typing')")
            bob.fill("#composer-input", "hello alice")
            bob.press("#composer-input", "Enter")
            alice.wait_for_selector("#messages .msg:has-text('hello alice')")
            assert bodies(alice) == bodies(bob) == ["hi bob", "hello alice"]
            assert alice.inner_text("#typing") == ""

            # alice edits her message: bob sees the new text, marked edited
            mine = alice.locator("#messages li.mine", has_text="hi bob")
            mine.get_by_role("button", name=re.compile("^Edit message")).click()
            field = alice.get_by_label(re.compile("^New text for message"))
            field.fill("hi bob, how are you?")
            field.press("Enter")
            bob.wait_for_selector("#messages .msg:has-text('hi bob, how are you?') .edited")
            # only one's own messages have edit/delete buttons
            assert bob.locator("#messages li:has-text('how are you') button").count() == 0

            # and deletes it
            alice.once("dialog", lambda d: d.accept())
            alice.locator("#messages li.mine", has_text="how are you").get_by_role(
                "button", name=re.compile("^Delete message")
            ).click()
            bob.wait_for_selector("#messages li.deleted:has-text('message deleted')")
            assert bodies(bob) == ["message deleted", "hello alice"]
            alice.screenshot(path=str(ARTIFACTS / "chat.png"))

        # bob left: alice sees him go
        alice.wait_for_selector("#presence li:has-text('bob')", state="detached")


def test_offline_then_back_sees_every_message_in_order(browser: Any, server: ServerProcess) -> None:
    room = fresh_room("offline")
    with signed_in(browser, server, ALICE) as alice:
        alice.fill("#room-input", room)
        alice.press("#room-input", "Enter")
        alice.wait_for_selector(f"#room-title:text-is('# {room}')")
        with signed_in(browser, server, BOB, room) as bob:
            send(alice, "before 0")
            bob.wait_for_selector("#messages .msg:has-text('before 0')")

            bob.context.set_offline(True)
            bob.wait_for_selector("#conn[data-state=reconnecting]")
            sent = [f"while away {i}" for i in range(6)]
            for text in sent:
                send(alice, text)
                alice.wait_for_selector(f"#messages .msg:has-text('{text}')")
            # bob writes while offline: held in the outbox, shown as waiting
            send(bob, "written offline")
            bob.wait_for_selector("#outbox:has-text('1 message waiting')")
            time.sleep(0.5)  # messages keep arriving server-side; bob must not see them yet
            assert bodies(bob) == ["before 0"]

            bob.context.set_offline(False)
            bob.wait_for_selector("#conn[data-state=open]")
            bob.wait_for_selector("#messages .msg:has-text('written offline')")
            expected = ["before 0", *sent, "written offline"]
            wait_until(lambda: bodies(bob) == expected)
            alice.wait_for_selector("#messages .msg:has-text('written offline')")
            wait_until(lambda: bodies(alice) == expected)
            assert bob.inner_text("#outbox") == ""
            # in seq order, each once
            seqs = bob.eval_on_selector_all(
                "#messages li.msg", "els => els.map(e => Number(e.dataset.seq))"
            )
            assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
            # the position survives in sessionStorage for the next connection
            stored = bob.evaluate("sessionStorage.getItem('nexus.positions.acme/bob')")
            assert f'"{room}":{max(seqs)}' in stored
            bob.screenshot(path=str(ARTIFACTS / "after-offline.png"))

    # the server stored it once: the outbox resend did not duplicate it
    with http(server) as api:
        page = api.get(f"/v1/rooms/{room}/messages", params={"limit": 50}).json()
    stored_bodies = [m["body"] for m in page["messages"] if m["type"] == "message"]
    assert stored_bodies == expected


def test_agent_reply_streams_in(browser: Any, server: ServerProcess) -> None:
    room = fresh_room("agents")
    with http(server) as api:
        r = api.post("/v1/agents", json={"name": "helper", "provider": "offline"})
        assert r.status_code in (201, 409), r.text
        assert api.post("/v1/rooms", json={"name": room}).status_code == 201
        r = api.put(f"/v1/rooms/{room}/members/helper", json={"role": "member"})
        assert r.status_code == 200, r.text
        for body in ("Billing is owned by Bob since March", "The billing export runs nightly"):
            assert api.post(f"/v1/rooms/{room}/messages", json={"body": body}).status_code == 201
    with signed_in(browser, server, ALICE, room) as page:
        # every text the reply shows while it streams, recorded in the page
        page.evaluate(
            """() => {
              window.replyTexts = [];
              new MutationObserver(() => {
                const el = document.querySelector('#messages li.reply .body');
                if (el && window.replyTexts.at(-1) !== el.textContent)
                  window.replyTexts.push(el.textContent);
              }).observe(document.getElementById('messages'),
                         {subtree: true, childList: true, characterData: true});
            }"""
        )
        send(page, "@helper who owns billing?")
        page.wait_for_selector("#messages li.reply[data-state=streaming][aria-busy=true]")
        page.wait_for_selector("#messages li.reply[data-state=completed]", timeout=20_000)
        final = page.inner_text("#messages li.reply .body")
        texts = page.evaluate("window.replyTexts")
        page.screenshot(path=str(ARTIFACTS / "agent-reply.png"))
    assert "Bob" in final
    # it grew piece by piece: several partial texts, each a prefix of the final one
    partial = [t for t in texts if t and t != final]
    assert len(partial) >= 2, texts
    assert all(final.startswith(t) for t in partial), texts
    with http(server) as api:
        entries = api.get(f"/v1/rooms/{room}/messages").json()["messages"]
    started = next(e for e in entries if e["type"] == "message.started")
    assert started["text"] == final and started["state"] == "completed"


def test_tasks_panel_and_search(browser: Any, server: ServerProcess) -> None:
    room = fresh_room("work")
    with http(server, ALICE) as api:
        assert api.post("/v1/rooms", json={"name": room}).status_code == 201
    with signed_in(browser, server, ALICE, room) as page:
        page.fill("#task-input", "Rotate the keys")
        page.press("#task-input", "Enter")
        page.wait_for_selector("#tasks li:has-text('Rotate the keys')")
        page.get_by_label("State of Rotate the keys").select_option("in_progress")
        with http(server, ALICE) as api:
            wait_until(
                lambda: (
                    api.get("/v1/tasks", params={"room": room}).json()["tasks"][0]["state"]
                    == "in_progress"
                )
            )
        # a task made elsewhere shows up live
        with http(server, BOB) as api:
            r = api.post(f"/v1/rooms/{room}/tasks", json={"title": "Renew the certificate"})
            assert r.status_code == 201, r.text
        page.wait_for_selector("#tasks li:has-text('Renew the certificate')")
        page.screenshot(path=str(ARTIFACTS / "tasks.png"))

        send(page, "the zeppelin decision is final")
        page.wait_for_selector("#messages .msg:has-text('zeppelin')")
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_label("Words to find").fill("zeppelin")

        def found() -> bool:  # the index is fed after the commit: ask until it has it
            page.get_by_label("Words to find").press("Enter")
            page.wait_for_selector("#search-status:not(:text-is('Searching…'))")
            return page.locator("#search-results li").count() > 0

        wait_until(found)
        assert page.inner_text("#search-results li mark").lower() == "zeppelin"
        page.screenshot(path=str(ARTIFACTS / "search.png"))
        page.locator("#search-results li").first.get_by_role("button").click()
        page.wait_for_selector(f"#room-title:text-is('# {room}')")
        # an error from the API is shown, not swallowed
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_label("In room (optional)").fill("no-such-room")
        page.get_by_label("Words to find").press("Enter")
        page.wait_for_selector("#alerts .alert:has-text('Search')")


def test_admin_view_connections_forced_disconnect_agents_and_charts(
    browser: Any, server: ServerProcess
) -> None:
    room = fresh_room("admin")
    with signed_in(browser, server, ADMIN) as admin, signed_in(browser, server, BOB) as bob:
        bob_session = bob.evaluate("window.nexusClient.session.session_id")
        admin.get_by_role("button", name="Admin", exact=True).click()
        admin.wait_for_selector(f"#connections tr[data-session='{bob_session}']")
        admin.get_by_label("New agent (built-in offline provider)").fill("scribe")
        admin.get_by_role("button", name="Create agent").click()
        admin.wait_for_selector("#agents tr[data-agent=scribe]")
        with http(server) as api:
            assert api.post("/v1/rooms", json={"name": room}).status_code == 201
        admin.get_by_role("button", name="Refresh").click()
        admin.wait_for_selector(f"#admin-rooms td:text-is('{room}')")
        admin.wait_for_selector("#plugins tbody tr")
        # the charts fill in as /metrics is sampled (every 2 s), with some traffic to draw
        with http(server) as api:
            for i in range(3):
                api.post(f"/v1/rooms/{room}/messages", json={"body": f"traffic {i}"})
                admin.wait_for_timeout(700)
        # (page.wait_for_function evaluates a string: the app's CSP forbids that)
        wait_until(
            lambda: (
                admin.evaluate(
                    "() => document.querySelector("
                    "'figure[data-metric=nexus_messages_stored_total] polyline')"
                    "?.getAttribute('points').split(' ').length ?? 0"
                )
                >= 2
            )
        )
        assert admin.locator("#charts figure").count() == 8
        admin.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)

        admin.once("dialog", lambda d: d.accept())
        admin.get_by_role("button", name=f"Disconnect bob (session {bob_session})").click()
        admin.wait_for_selector(f"#connections tr[data-session='{bob_session}']", state="detached")
        # bob's app stops (4502 is "do not reconnect") and says why
        bob.wait_for_selector("#conn[data-state=closed]")
        bob.wait_for_selector("#alerts .alert:has-text('disconnected by an administrator')")
        time.sleep(1.0)
        assert bob.get_attribute("#conn", "data-state") == "closed"
        # reconnecting is bob's own decision
        bob.get_by_role("button", name="Reconnect").click()
        bob.wait_for_selector("#conn[data-state=open]")
        assert bob.is_hidden("#reconnect")


def test_members_cannot_see_admin_and_sign_in_form_errors(
    browser: Any, server: ServerProcess
) -> None:
    with signed_in(browser, server, BOB) as page:
        assert page.get_by_role("button", name="Admin", exact=True).is_hidden()
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{server.api}/")  # redirects to the app
    page.get_by_label("Access token (JWT)").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#alerts .alert:has-text('Sign in failed')")
    assert page.is_visible("#signin-view")
    ctx.close()


def test_phone_viewport_and_labels(browser: Any, server: ServerProcess) -> None:
    room = fresh_room("phone")
    with http(server, ALICE) as api:
        assert api.post("/v1/rooms", json={"name": room}).status_code == 201
        for i in range(3):
            api.post(f"/v1/rooms/{room}/messages", json={"body": f"a longer line of text {i} " * 4})
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
    with signed_in(browser, server, ALICE, room, **phone) as page:
        page.wait_for_selector("#messages .msg:has-text('text 2')")
        # nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # every form control has a label (or an aria-label)
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, textarea, select')]
                 .filter(el => !(el.labels?.length || el.getAttribute('aria-label')))
                 .map(el => el.id || el.name)"""
        )
        assert unlabelled == []
        # keyboard only: Enter in the composer sends
        page.focus("#composer-input")
        page.keyboard.type("sent from the keyboard")
        page.keyboard.press("Enter")
        page.wait_for_selector("#messages .msg:has-text('sent from the keyboard')")
        page.screenshot(path=str(ARTIFACTS / "phone-chat.png"), full_page=True)


@pytest.fixture(autouse=True)
def _artifacts_dir() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


def test_the_printed_url_opens_a_working_chat(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """As after `make run`: development defaults (the dev secret, the dev token printed);
    the URL `nexus serve` prints signs in at once and chats."""
    srv = start_server(
        tmp_path_factory.mktemp("devdata"),
        auth_secret=None,
        auth_issuer=None,
        auth_audience=None,
        print_dev_token="true",
    )
    try:
        wait_until(lambda: any(line.startswith("nexus web app on ") for line in srv.output))
        line = next(line for line in srv.output if line.startswith("nexus web app on "))
        url = line.removeprefix("nexus web app on ").strip()
        assert url.startswith(f"{srv.api}/app/#token=ey"), url
        ctx = browser.new_context()
        ctx.set_default_timeout(TIMEOUT_MS)
        page = ctx.new_page()
        page.goto(url)
        page.wait_for_selector("#conn[data-state=open]")
        assert "#token" not in page.url  # taken out of the address bar
        assert page.inner_text("#whoami").startswith("dev · dev")
        page.fill("#room-input", "general")
        page.press("#room-input", "Enter")
        send(page, "hello from the printed URL")
        page.wait_for_selector("#messages li.mine:has-text('hello from the printed URL')")
        # a reload keeps the session (token in sessionStorage) and shows the history
        page.reload()
        page.wait_for_selector("#conn[data-state=open]")
        page.wait_for_selector("#messages li.mine:has-text('hello from the printed URL')")
        ctx.close()
    finally:
        assert srv.stop() == 0, "".join(srv.output)


def test_static_files_need_no_token_and_carry_security_headers(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.api, timeout=10) as anon:
        r = anon.get("/")
        assert r.status_code == 307 and r.headers["location"] == "/app/"
        r = anon.get("/app/")
        assert r.status_code == 200 and "<title>Nexus</title>" in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        r = anon.get("/app/nexus.js")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"]
        assert anon.get("/app/config.json").json() == {"ws_port": server.port, "ws_path": "/ws"}
        r = anon.get("/app/no-such-file.js")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert anon.get("/v1/rooms").status_code == 401  # the API still needs a token
