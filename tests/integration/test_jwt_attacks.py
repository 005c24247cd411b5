"""RFC 8725 attacks on JWT verification, end to end, over every way a token reaches the server.

Every attack token is built by hand (base64url header, payload and signature) so that no JWT
library normalises it on the way out, and each one is presented on the three paths:

- ``auth``: the ``auth`` message after connecting without a token: ``error`` ``unauthorized``
  with the request's id, then close 4501;
- ``header``: ``Authorization: Bearer`` on the upgrade request: HTTP 401 with
  ``{"error": {"code": "unauthorized", "message": ...}}`` and no upgrade;
- ``api``: the same header on ``GET /v1/rooms``: HTTP 401 with the same JSON body.

Control cases send valid tokens down each path, so a refusal here means the check refused the
token and not that the path is broken. Three servers run for the module, started together:
HS256 with the harness secret, RS256 pinned to one public key file, RS256 with a two-key JWKS.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import httpx
import pytest
import pytest_asyncio
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from nexus.errors import CloseCode

from .harness import AUDIENCE, ISSUER, SECRET, Client, ServerProcess, start_server

# One event loop for the module, so one HTTP client (and its connections) serves every test.
pytestmark = pytest.mark.asyncio(loop_scope="module")

PATHS = ("auth", "header", "api")
TIMEOUT = 5.0  # bound on every wait of a single check
TOKEN_MAX_CHARS = 8192  # protocol.md §2.1
ATTACKER_SECRET = b"attacker-chosen-hmac-secret-0123456789"
OTHER_SECRET = b"a-different-secret-of-enough-length-0123"

# -- building tokens by hand ------------------------------------------------------------------

Segment = dict[str, Any] | list[Any] | str | bytes
"""A header or payload: a JSON value to serialise, JSON text as written (``str``, so raw
``NaN`` or ``1e400`` survive), or raw bytes to base64url-encode (``bytes``, for non-JSON)."""

SigningKey = bytes | rsa.RSAPrivateKey | None
"""HMAC-SHA256 secret (bytes), RS256 private key, or None for an empty signature."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_segment(part: Segment) -> str:
    if isinstance(part, bytes):
        return b64url(part)
    if isinstance(part, str):
        return b64url(part.encode())
    return b64url(json.dumps(part, separators=(",", ":")).encode())


def sign(key: SigningKey, signing_input: bytes) -> bytes:
    if key is None:
        return b""
    if isinstance(key, bytes):
        return hmac.new(key, signing_input, hashlib.sha256).digest()
    return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def craft(header: Segment, payload: Segment, key: SigningKey = SECRET.encode()) -> str:
    """``header.payload.signature``, the signature made with ``key`` over the first two."""
    head, body = encode_segment(header), encode_segment(payload)
    signature = sign(key, f"{head}.{body}".encode())
    return f"{head}.{body}.{b64url(signature)}"


HS256: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
RS256: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for the test issuer and audience; a change to ``None`` drops the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "mallory",
        "tenant": "acme",
        "roles": ["member"],
        "kind": "human",
        "iat": now,
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def claims_text(**raw: str) -> str:
    """Valid claims as JSON text, with each of ``raw`` written verbatim as a claim's value."""
    text = json.dumps({k: v for k, v in claims(roles=["admin"]).items() if k not in raw})
    return text[:-1] + "".join(f', "{name}": {value}' for name, value in raw.items()) + "}"


def sized_token(chars: int) -> str:
    """A correctly signed HS256 token padded with a junk claim to ``chars`` or ``chars + 1``
    characters (one more payload byte adds one or two base64url characters)."""
    pad = chars * 3 // 4 - 300
    while len(tok := craft(HS256, claims(pad="x" * pad))) < chars:
        pad += 1
    assert chars <= len(tok) <= chars + 1
    return tok


# -- keys, and a trap for header-borne key URLs ---------------------------------------------


def rsa_jwk(key: rsa.RSAPublicKey, **extra: str) -> dict[str, str]:
    numbers = key.public_numbers()

    def uint(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    return {"kty": "RSA", "n": uint(numbers.n), "e": uint(numbers.e), **extra}


def self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nexus-test-issuer")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


class UrlTrap:
    """A loopback HTTP server holding the attacker's keys; it records every request, so a
    test can show that ``jku``/``x5u`` URLs in a token header are never fetched."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                body = files.get(self.path, b"")
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(TIMEOUT)


@dataclass(frozen=True)
class KeyRing:
    """The servers' keys, the attacker's keys, and the trap serving the attacker's."""

    server_rsa: rsa.RSAPrivateKey  # the RS256 server's key; also key-a of the JWKS server
    jwks_b: rsa.RSAPrivateKey  # key-b of the JWKS server
    attacker_rsa: rsa.RSAPrivateKey
    attacker_cert: x509.Certificate
    trap: UrlTrap

    @property
    def public_pem(self) -> bytes:
        return self.server_rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def public_der(self) -> bytes:
        return self.server_rsa.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def x5c(self) -> list[str]:
        """The attacker's certificate chain as a JWS ``x5c`` header (standard base64 DER)."""
        der = self.attacker_cert.public_bytes(serialization.Encoding.DER)
        return [base64.b64encode(der).decode()]


@pytest.fixture(scope="module")
def keys() -> Iterator[KeyRing]:
    def new_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    server_rsa, jwks_b, attacker = new_key(), new_key(), new_key()
    cert = self_signed(attacker)
    attacker_jwks = {
        "keys": [
            rsa_jwk(attacker.public_key(), kid="attacker-rsa", alg="RS256", use="sig"),
            {"kty": "oct", "kid": "attacker-oct", "alg": "HS256", "k": b64url(ATTACKER_SECRET)},
        ]
    }
    trap = UrlTrap(
        {
            "/jwks.json": json.dumps(attacker_jwks).encode(),
            "/cert.pem": cert.public_bytes(serialization.Encoding.PEM),
        }
    )
    yield KeyRing(server_rsa, jwks_b, attacker, cert, trap)
    trap.close()


@dataclass(frozen=True)
class Servers:
    """The module's three servers, one per way of configuring verification."""

    hs: ServerProcess  # HS256, the harness secret
    rs: ServerProcess  # RS256, auth_public_key_file
    jwks: ServerProcess  # RS256, auth_jwks_file with key-a and key-b

    def named(self, name: str) -> ServerProcess:
        server: ServerProcess = getattr(self, name)
        return server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, keys: KeyRing) -> Iterator[Servers]:
    """The three servers, started in parallel (each start is about a second)."""
    keydir = tmp_path_factory.mktemp("keys")
    pem = keydir / "public.pem"
    pem.write_bytes(keys.public_pem)
    jwks = keydir / "jwks.json"
    jwks.write_text(
        json.dumps(
            {
                "keys": [
                    rsa_jwk(keys.server_rsa.public_key(), kid="key-a", alg="RS256", use="sig"),
                    rsa_jwk(keys.jwks_b.public_key(), kid="key-b", alg="RS256", use="sig"),
                ]
            }
        ),
        "utf-8",
    )
    configs: list[dict[str, Any]] = [
        {},
        {"auth_algorithms": "RS256", "auth_public_key_file": pem, "auth_secret": None},
        {"auth_algorithms": "RS256", "auth_jwks_file": jwks, "auth_secret": None},
    ]
    data_dirs = [tmp_path_factory.mktemp("data") for _ in configs]
    with ThreadPoolExecutor(len(configs)) as pool:
        futures: list[Future[ServerProcess]] = [
            pool.submit(start_server, data_dir, **config)
            for data_dir, config in zip(data_dirs, configs, strict=True)
        ]
    started = [f.result() for f in futures if f.exception() is None]
    try:
        for f in futures:
            f.result()  # the first start failure, if any
        yield Servers(*started)
    finally:
        codes = [srv.stop() for srv in started]
    assert codes == [0] * len(started), "".join(o for s in started for o in s.output)


# -- one refusal / acceptance check per path --------------------------------------------------


class Case(NamedTuple):
    """One token to present: which server gets it, and how to build it from the keys."""

    server: str  # a field of Servers
    build: Callable[[KeyRing], str]


def cases(table: dict[str, Case]) -> list[Any]:
    return [pytest.param(case, id=name) for name, case in table.items()]


def bearer(tok: str) -> dict[str, str]:
    # "Bearer " with a trailing space is not a valid header value for httpx (h11).
    return {"Authorization": f"Bearer {tok}" if tok else "Bearer"}


def assert_unauthorized_body(body: Any) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    assert error["code"] == "unauthorized", body
    assert isinstance(error["message"], str) and error["message"], body


@dataclass(frozen=True)
class Gate:
    """Presents tokens to the servers on each path and checks the documented answer."""

    servers: Servers
    keys: KeyRing
    http: httpx.AsyncClient

    async def refuses(self, case: Case, path: str) -> None:
        """``case``'s token is refused on ``path`` with that path's documented answer."""
        await self.refuses_token(self.servers.named(case.server), case.build(self.keys), path)

    async def refuses_token(self, server: ServerProcess, tok: str, path: str) -> None:
        if path == "auth":
            client = await Client.connect(server.url)
            try:
                await client.send({"type": "auth", "token": tok, "id": "attack"})
                event = await client.recv(TIMEOUT)
                rid = "attack"
                if tok == "":
                    # protocol.md §2/§4.1: an empty token fails to decode (bad_request) and
                    # the connection stays open, unauthenticated: the next request is refused.
                    assert (event["type"], event["code"], event["id"]) == (
                        "error",
                        "bad_request",
                        "attack",
                    ), event
                    rid = "after"
                    await client.send({"type": "ping", "id": rid})
                    event = await client.recv(TIMEOUT)
                assert (event["type"], event.get("code"), event.get("id")) == (
                    "error",
                    "unauthorized",
                    rid,
                ), event
                assert await client.closed_code(TIMEOUT) == CloseCode.UNAUTHORIZED
            finally:
                await client.close()
        elif path == "header":
            try:
                ws = await websockets.connect(
                    server.url, additional_headers=bearer(tok), open_timeout=TIMEOUT
                )
            except websockets.InvalidStatus as exc:
                response = exc.response
            else:
                await ws.close()
                pytest.fail("the upgrade was accepted")
            assert response.status_code == 401, (response, response.body)
            assert_unauthorized_body(json.loads(response.body))
        else:
            r = await self.http.get(f"{server.api}/v1/rooms", headers=bearer(tok))
            assert r.status_code == 401, r.text
            assert_unauthorized_body(r.json())

    async def admits(self, case: Case, path: str) -> None:
        """``case``'s token opens a working session on ``path`` (ping answered; rooms listed)."""
        server, tok = self.servers.named(case.server), case.build(self.keys)
        if path == "api":
            r = await self.http.get(f"{server.api}/v1/rooms", headers=bearer(tok))
            assert r.status_code == 200, r.text
            assert isinstance(r.json()["rooms"], list)
            return
        if path == "auth":
            client = await Client.connect(server.url)
            reply = await client.request({"type": "auth", "token": tok}, timeout=TIMEOUT)
            assert reply["type"] == "auth.ok", reply
        else:
            client = await Client.connect(server.url, tok, header=True)  # waits for auth.ok
        try:
            assert (await client.request({"type": "ping"}, timeout=TIMEOUT))["type"] == "pong"
        finally:
            await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gate(servers: Servers, keys: KeyRing) -> AsyncIterator[Gate]:
    # One HTTP client for the module: building one loads the CA bundle (about 90 ms).
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        yield Gate(servers, keys, http)


# -- alg: none ----------------------------------------------------------------------------


def unsigned(server: str, alg: str, signature: str = "", **header: Any) -> Case:
    return Case(
        server,
        lambda k: (
            craft({"alg": alg, "typ": "JWT", **header}, claims(roles=["admin"]), None) + signature
        ),
    )


ALG_NONE = {
    f"alg-{alg}-{sig_name}": unsigned("hs", alg, sig)
    for alg in ("none", "None", "NONE", "nOnE")
    for sig_name, sig in (("empty-sig", ""), ("bogus-sig", b64url(b"bogus-signature")))
}
ALG_NONE["alg-none-rs256-server"] = unsigned("rs", "none")
ALG_NONE["alg-none-jwks-known-kid"] = unsigned("jwks", "none", kid="key-a")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", cases(ALG_NONE))
async def test_alg_none_is_refused(gate: Gate, case: Case, path: str) -> None:
    """``alg: none`` in any casing, with an empty or a bogus signature, on every server."""
    await gate.refuses(case, path)


# -- algorithm confusion ------------------------------------------------------------------

CONFUSION = {
    # The classic: the attacker knows the public key and uses its PEM text as an HMAC secret.
    "hs256-keyed-with-public-pem": Case(
        "rs", lambda k: craft(HS256, claims(roles=["admin"]), k.public_pem)
    ),
    "hs256-keyed-with-stripped-pem": Case(
        "rs", lambda k: craft(HS256, claims(roles=["admin"]), k.public_pem.strip())
    ),
    "hs256-keyed-with-public-der": Case(
        "rs", lambda k: craft(HS256, claims(roles=["admin"]), k.public_der)
    ),
    "hs256-keyed-with-pem-on-jwks-server": Case(
        "jwks", lambda k: craft({**HS256, "kid": "key-a"}, claims(roles=["admin"]), k.public_pem)
    ),
    # A genuine RS256 token is still refused where only HS256 is pinned.
    "rs256-token-on-hs256-server": Case("hs", lambda k: craft(RS256, claims(), k.server_rsa)),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", cases(CONFUSION))
async def test_algorithm_confusion_is_refused(gate: Gate, case: Case, path: str) -> None:
    """HS/RS confusion: only the pinned algorithm family verifies, whatever key it is fed."""
    await gate.refuses(case, path)


# -- keys carried in the token header -----------------------------------------------------

HEADER_KEYS = {
    # HS256 server: the attacker signs with its own secret and says where to find it.
    "hs-jwk-oct": Case(
        "hs",
        lambda k: craft(
            {**HS256, "jwk": {"kty": "oct", "k": b64url(ATTACKER_SECRET)}},
            claims(roles=["admin"]),
            ATTACKER_SECRET,
        ),
    ),
    "hs-jku": Case(
        "hs",
        lambda k: craft(
            {**HS256, "jku": k.trap.url("/jwks.json"), "kid": "attacker-oct"},
            claims(roles=["admin"]),
            ATTACKER_SECRET,
        ),
    ),
    "hs-x5u": Case(
        "hs",
        lambda k: craft(
            {**HS256, "x5u": k.trap.url("/cert.pem")}, claims(roles=["admin"]), ATTACKER_SECRET
        ),
    ),
    "hs-x5c": Case(
        "hs", lambda k: craft({**HS256, "x5c": k.x5c}, claims(roles=["admin"]), ATTACKER_SECRET)
    ),
    # RS256 servers: the attacker signs with its own RSA key and embeds or points to it.
    "rs-jwk": Case(
        "rs",
        lambda k: craft(
            {**RS256, "jwk": rsa_jwk(k.attacker_rsa.public_key())},
            claims(roles=["admin"]),
            k.attacker_rsa,
        ),
    ),
    "rs-jku": Case(
        "rs",
        lambda k: craft(
            {**RS256, "jku": k.trap.url("/jwks.json"), "kid": "attacker-rsa"},
            claims(roles=["admin"]),
            k.attacker_rsa,
        ),
    ),
    "rs-x5u": Case(
        "rs",
        lambda k: craft(
            {**RS256, "x5u": k.trap.url("/cert.pem")}, claims(roles=["admin"]), k.attacker_rsa
        ),
    ),
    "rs-x5c": Case(
        "rs", lambda k: craft({**RS256, "x5c": k.x5c}, claims(roles=["admin"]), k.attacker_rsa)
    ),
    "jwks-jwk-with-known-kid": Case(
        "jwks",
        lambda k: craft(
            {**RS256, "kid": "key-a", "jwk": rsa_jwk(k.attacker_rsa.public_key(), kid="key-a")},
            claims(roles=["admin"]),
            k.attacker_rsa,
        ),
    ),
    "jwks-jku-with-known-kid": Case(
        "jwks",
        lambda k: craft(
            {**RS256, "kid": "key-a", "jku": k.trap.url("/jwks.json")},
            claims(roles=["admin"]),
            k.attacker_rsa,
        ),
    ),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", cases(HEADER_KEYS))
async def test_keys_in_the_header_are_not_trusted(gate: Gate, case: Case, path: str) -> None:
    """``jwk``/``jku``/``x5u``/``x5c`` headers naming the attacker's key do not verify it,
    and the URLs are never fetched."""
    await gate.refuses(case, path)
    assert gate.keys.trap.hits == []


# -- JWKS key selection -------------------------------------------------------------------

JWKS_KID = {
    "kid-not-in-set": Case(
        "jwks", lambda k: craft({**RS256, "kid": "key-c"}, claims(), k.server_rsa)
    ),
    "kid-a-signed-with-b": Case(
        "jwks", lambda k: craft({**RS256, "kid": "key-a"}, claims(), k.jwks_b)
    ),
    "kid-b-signed-with-a": Case(
        "jwks", lambda k: craft({**RS256, "kid": "key-b"}, claims(), k.server_rsa)
    ),
    "kid-path-traversal": Case(
        "jwks", lambda k: craft({**RS256, "kid": "../../dev/null"}, claims(), k.server_rsa)
    ),
    "kid-sql-ish": Case(
        "jwks", lambda k: craft({**RS256, "kid": "' OR 1=1 --"}, claims(), k.server_rsa)
    ),
    "kid-missing": Case("jwks", lambda k: craft(RS256, claims(), k.server_rsa)),
    "kid-not-a-string": Case(
        "jwks", lambda k: craft({**RS256, "kid": ["key-a"]}, claims(), k.server_rsa)
    ),
    "kid-signed-by-attacker": Case(
        "jwks", lambda k: craft({**RS256, "kid": "key-a"}, claims(), k.attacker_rsa)
    ),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", cases(JWKS_KID))
async def test_jwks_kid_must_name_the_signing_key(gate: Gate, case: Case, path: str) -> None:
    """With a JWKS, the ``kid`` must name a key of the set and that key must verify."""
    await gate.refuses(case, path)


# -- registered claims --------------------------------------------------------------------


def hs_claims(**changes: Any) -> Case:
    return Case("hs", lambda k: craft(HS256, claims(**changes)))


def hs_times(**offsets: int) -> Case:
    """Time claims ``offsets`` seconds from now, read when the token is built."""
    return Case(
        "hs",
        lambda k: craft(
            HS256, claims(**{name: int(time.time()) + offset for name, offset in offsets.items()})
        ),
    )


CLAIMS = {
    "expired": hs_times(iat=-7200, exp=-60),
    "nbf-in-future": hs_times(nbf=600),
    "wrong-aud": hs_claims(aud="someone-else"),
    "wrong-iss": hs_claims(iss="evil-issuer"),
    "aud-list-without-ours": hs_claims(aud=["someone-else", "another"]),
    "aud-empty-list": hs_claims(aud=[]),
    **{
        f"missing-{name}": hs_claims(**{name: None})
        for name in ("exp", "sub", "iss", "aud", "tenant")
    },
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", cases(CLAIMS))
async def test_bad_registered_claims_are_refused(gate: Gate, case: Case, path: str) -> None:
    """Correctly signed tokens whose time, issuer, audience or required claims are wrong."""
    await gate.refuses(case, path)


# -- time claims of the wrong JSON type ---------------------------------------------------


def raw_claims(**raw: str) -> Case:
    return Case("hs", lambda k: craft(HS256, claims_text(**raw)))


TIME_TYPES = {
    # RFC 7519 NumericDate is a JSON number. A string "9999999999" is coerced by PyJWT and then
    # the session never expires (expires_at falls back to 0).
    "exp-numeric-string": raw_claims(exp='"9999999999"'),
    "nbf-string": raw_claims(nbf='"0"'),
    "iat-string": raw_claims(iat='"0"'),
    "exp-true": raw_claims(exp="true"),
    "exp-1e400": raw_claims(exp="1e400"),  # Python's json reads it as inf
    "exp-NaN": raw_claims(exp="NaN"),
    "exp-Infinity": raw_claims(exp="Infinity"),
    "exp-minus-Infinity": raw_claims(exp="-Infinity"),
    "nbf-NaN": raw_claims(nbf="NaN"),
    "iat-Infinity": raw_claims(iat="Infinity"),
    "exp-object": raw_claims(exp='{"$date": 9999999999}'),
    "exp-array": raw_claims(exp="[9999999999]"),
    "exp-400-digit-integer": raw_claims(exp="9" * 400),  # an int no float can hold
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", cases(TIME_TYPES))
async def test_time_claims_must_be_finite_numbers(gate: Gate, case: Case, path: str) -> None:
    """``exp``/``nbf``/``iat`` written as strings, booleans, objects, arrays, NaN, infinities
    or numbers no float can hold are refused, however far in the future they point."""
    await gate.refuses(case, path)


# -- signature tampering ------------------------------------------------------------------


def valid(**changes: Any) -> str:
    return craft(HS256, claims(**changes))


def escalated(k: KeyRing) -> str:
    head, _, sig = valid().split(".")
    return f"{head}.{encode_segment(claims(roles=['admin']))}.{sig}"


def signature_of_another_token(k: KeyRing) -> str:
    head, body, _ = valid(sub="mallory", roles=["admin"]).split(".")
    return f"{head}.{body}.{valid(sub='bob').split('.')[2]}"


def typ_changed(k: KeyRing) -> str:
    _, body, sig = valid().split(".")
    return f"{encode_segment({'alg': 'HS256', 'typ': 'at+jwt'})}.{body}.{sig}"


def truncated(k: KeyRing) -> str:
    tok = valid()
    head, body, sig = tok.split(".")
    return f"{head}.{body}.{sig[:32]}"  # 24 bytes of a 32-byte HMAC, still valid base64url


def stripped(k: KeyRing) -> str:
    head, body, _ = valid(roles=["admin"]).split(".")
    return f"{head}.{body}."


TAMPERING = {
    "payload-escalated-after-signing": Case("hs", escalated),
    "signature-truncated": Case("hs", truncated),
    "signature-stripped": Case("hs", stripped),
    "signature-of-another-token": Case("hs", signature_of_another_token),
    "header-typ-changed": Case("hs", typ_changed),
    "wrong-secret": Case("hs", lambda k: craft(HS256, claims(), OTHER_SECRET)),
    "rs256-other-key": Case("rs", lambda k: craft(RS256, claims(), k.attacker_rsa)),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", cases(TAMPERING))
async def test_tampered_signatures_are_refused(gate: Gate, case: Case, path: str) -> None:
    """Any change to header, payload or signature after signing, or a foreign key."""
    await gate.refuses(case, path)


# -- malformed tokens ---------------------------------------------------------------------

MALFORMED = {
    "two-segments": Case("hs", lambda k: ".".join(valid().split(".")[:2])),
    "four-segments": Case("hs", lambda k: valid() + "." + b64url(b"extra")),
    "invalid-base64url": Case("hs", lambda k: "eyJhbGciOi*JIUzI1NiJ9.e30!.c2ln$"),
    "header-not-json": Case("hs", lambda k: craft(b"not json at all", claims())),
    "header-json-array": Case("hs", lambda k: craft('[{"alg": "HS256"}]', claims())),
    "payload-not-json": Case("hs", lambda k: craft(HS256, b"\xff\xfe not json")),
    "empty": Case("hs", lambda k: ""),
    "oversized-9000-chars": Case("hs", lambda k: sized_token(9000)),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", cases(MALFORMED))
async def test_malformed_tokens_are_refused(gate: Gate, case: Case, path: str) -> None:
    """Wrong segment counts, bad encodings, non-object JSON, empty and oversized tokens."""
    await gate.refuses(case, path)


# -- controls -----------------------------------------------------------------------------


def junk_headers(k: KeyRing) -> dict[str, Any]:
    return {
        "kid": "../../etc/passwd",
        "jku": k.trap.url("/jwks.json"),
        "x5u": k.trap.url("/cert.pem"),
    }


ACCEPTED = {
    "hs256-valid": Case("hs", lambda k: craft(HS256, claims())),
    "hs256-aud-list-with-ours": Case(
        "hs", lambda k: craft(HS256, claims(aud=["someone-else", AUDIENCE]))
    ),
    "hs256-with-junk-kid-jku-x5u": Case(
        "hs", lambda k: craft({**HS256, **junk_headers(k)}, claims())
    ),
    "hs256-at-the-size-limit": Case("hs", lambda k: sized_token(TOKEN_MAX_CHARS - 1)),
    "rs256-valid": Case("rs", lambda k: craft(RS256, claims(), k.server_rsa)),
    "rs256-with-junk-key-headers": Case(
        "rs",
        lambda k: craft(
            {**RS256, **junk_headers(k), "x5c": k.x5c, "jwk": rsa_jwk(k.attacker_rsa.public_key())},
            claims(),
            k.server_rsa,
        ),
    ),
    "jwks-kid-a": Case("jwks", lambda k: craft({**RS256, "kid": "key-a"}, claims(), k.server_rsa)),
    "jwks-kid-b": Case("jwks", lambda k: craft({**RS256, "kid": "key-b"}, claims(), k.jwks_b)),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", cases(ACCEPTED))
async def test_valid_tokens_are_accepted(gate: Gate, case: Case, path: str) -> None:
    """Controls: a valid token passes each path, header-borne keys and URLs are ignored (not
    fetched), an ``aud`` list holding our audience passes, and so does a token just under
    the size limit."""
    await gate.admits(case, path)
    assert gate.keys.trap.hits == []


async def test_servers_stay_healthy_after_the_attacks(gate: Gate) -> None:
    """Runs last: every server process is alive and admits a valid token on every path, all
    at once, and no header URL was fetched during the whole module."""
    for srv in (gate.servers.hs, gate.servers.rs, gate.servers.jwks):
        assert srv.proc.poll() is None, "".join(srv.output)
    controls = ("hs256-valid", "rs256-valid", "jwks-kid-a", "jwks-kid-b")
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(
            *(gate.admits(ACCEPTED[name], path) for name in controls for path in PATHS)
        )
    assert gate.keys.trap.hits == []
