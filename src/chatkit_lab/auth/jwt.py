"""JWTs for chatkit-lab: a local issuer for notebooks and tests, and a strict JWKS verifier.

The verifier accepts only asymmetric algorithms (RS256, ES256), requires ``sub`` and ``exp``,
checks ``nbf``/``iat`` with a small leeway, and checks ``iss`` and ``aud`` when configured. Keys
come from a JWKS document or URL; they are cached, and an unknown ``kid`` triggers one refetch
(key rotation), at most every ``refetch_after`` seconds. When the key server is down, cached keys
keep working and a new ``kid`` gets a clear error. Every failure is an ``AuthError`` whose
message says what is wrong, never the token itself.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import errors, jwt
from joserfc.jwk import KeySet, RSAKey

from ..errors import AuthError, ChatLabError

ALGORITHMS = ["RS256", "ES256"]


@dataclass
class Identity:
    user_id: str
    claims: dict[str, Any] = field(default_factory=dict)


class LocalIssuer:
    """An RSA key pair that issues tokens and publishes its JWKS (``serve()`` puts it on HTTP)."""

    def __init__(self, issuer: str = "chatkit-lab-local", audience: str = "chatkit-lab") -> None:
        self.issuer, self.audience = issuer, audience
        self.keys: list[RSAKey] = []
        self.rotate()
        self._httpd: ThreadingHTTPServer | None = None

    def rotate(self, keep_old: bool = True) -> str:
        """Start signing with a new key (new ``kid``); returns the kid."""
        kid = f"key-{uuid.uuid4().hex[:8]}"
        key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
        self.keys = [key, *self.keys] if keep_old else [key]
        return kid

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self.keys]}

    def issue(self, user_id: str, *, ttl: float = 3600, **claims: Any) -> str:
        """A signed token for ``user_id``; ``claims`` are added as given, registered ones too
        (``nbf=``, ``iss=``): tests forge tokens with them. ``lab.login`` refuses those."""
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": self.audience, "sub": user_id, "iat": now, "nbf": now, "exp": now + int(ttl), **claims}
        key = self.keys[0]
        return jwt.encode({"alg": "RS256", "kid": key.kid}, payload, key)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the JWKS at ``/.well-known/jwks.json``; returns its URL."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps(issuer.jwks).encode()
                self.send_response(200 if self.path == "/.well-known/jwks.json" else 404)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return f"http://{host}:{self._httpd.server_address[1]}/.well-known/jwks.json"

    def stop_serving(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def verifier(self) -> JWKSVerifier:
        return JWKSVerifier(self.jwks, issuer=self.issuer, audience=self.audience)


def _key_set(document: Any) -> KeySet:
    try:
        return KeySet.import_key_set(document)
    except (errors.JoseError, KeyError, TypeError, ValueError) as exc:
        raise ChatLabError(f"The key set is not a JWKS with usable keys ({type(exc).__name__}: {exc}); "
                           'it looks like {"keys": [{"kty": "RSA", "kid": ..., "n": ..., "e": ...}]}.') from None


class JWKSVerifier:
    """Verifies ``Authorization: Bearer`` tokens against a JWKS document or URL."""

    def __init__(
        self,
        jwks: str | dict[str, Any],
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: int = 30,
        refetch_after: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        if isinstance(jwks, str) and not jwks.startswith(("https://", "http://")):
            raise ChatLabError(f"JWKSVerifier takes the key set's URL (https://...) or the key set as a dict, not {jwks[:60]!r}.")
        if not isinstance(jwks, str | dict):
            raise ChatLabError(f"JWKSVerifier takes the key set's URL (https://...) or the key set as a dict, not {type(jwks).__name__}.")
        self.url = jwks if isinstance(jwks, str) else None
        self.issuer, self.audience, self.leeway = issuer, audience, leeway
        self.refetch_after, self.timeout = refetch_after, timeout
        self._lock = threading.Lock()
        self._keys: KeySet | None = None if isinstance(jwks, str) else _key_set(jwks)
        self._fetched_at = float("-inf")
        registry: dict[str, Any] = {"sub": {"essential": True}, "exp": {"essential": True}}
        if issuer:
            registry["iss"] = {"essential": True, "value": issuer}
        if audience:
            registry["aud"] = {"essential": True, "value": audience}
        self._claims = jwt.JWTClaimsRegistry(leeway=leeway, **registry)

    def _fetch(self) -> KeySet:
        with urllib.request.urlopen(self.url, timeout=self.timeout) as response:  # type: ignore[arg-type]
            return _key_set(json.load(response))

    def _keyset(self, refresh: bool = False) -> KeySet:
        with self._lock:
            stale = self._keys is None or (refresh and time.monotonic() - self._fetched_at > self.refetch_after)
            if self.url and stale:
                try:
                    self._keys = self._fetch()
                    self._fetched_at = time.monotonic()
                except Exception as exc:
                    self._fetched_at = time.monotonic()  # do not hammer a server that is down
                    if self._keys is None or refresh:
                        raise AuthError(f"The signing keys could not be fetched from {self.url} ({type(exc).__name__}); try again later.") from None
            return self._keys  # type: ignore[return-value]

    def verify(self, authorization: str | None) -> Identity:
        """The identity in an ``Authorization`` header value, or ``AuthError`` saying why not."""
        if not authorization:
            raise AuthError("Missing Authorization header: send 'Authorization: Bearer <token>'.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or token.count(".") != 2:
            raise AuthError("Malformed Authorization header: expected 'Bearer <JWT>'.")
        try:
            try:
                decoded = jwt.decode(token, self._keyset(), algorithms=ALGORITHMS)
            except errors.InvalidKeyIdError:
                decoded = jwt.decode(token, self._keyset(refresh=True), algorithms=ALGORITHMS)  # rotated keys
            self._claims.validate(decoded.claims)
        except AuthError:
            raise
        except errors.InvalidKeyIdError:
            raise AuthError("The token was signed with an unknown key (kid); it was not issued by this server's issuer.") from None
        except errors.ExpiredTokenError:
            raise AuthError("The token has expired; log in again.") from None
        except errors.MissingClaimError as exc:
            raise AuthError(f"The token lacks the required claim {exc.claim!r}.") from None
        except errors.InvalidClaimError as exc:  # joserfc raises this for nbf/iat and for iss/aud/sub
            if exc.claim in ("nbf", "iat"):
                raise AuthError(f"The token is not valid yet (its {exc.claim!r} claim is in the future).") from None
            raise AuthError(f"The token has the wrong {exc.claim} claim for this server.") from None
        except errors.BadSignatureError:
            raise AuthError("The token's signature does not match: it was altered or signed with another key.") from None
        except (errors.UnsupportedAlgorithmError, errors.MissingAlgorithmError, errors.UnsupportedKeyAlgorithmError):
            raise AuthError(f"The token's algorithm is not allowed; only {', '.join(ALGORITHMS)} are accepted.") from None
        except (errors.JoseError, ValueError, TypeError) as exc:
            raise AuthError(f"The token could not be read ({type(exc).__name__}).") from None
        return Identity(user_id=str(decoded.claims["sub"]), claims=decoded.claims)


def checked_user_id(value: Any) -> str:
    """A user id as the store keys rows by it: a non-empty string. Anything else made every
    later request fail with "The request context has no user_id" and a traceback."""
    if not isinstance(value, str) or not value.strip():
        raise ChatLabError(f"A user id is a non-empty string such as 'alice', not {value!r}.")
    if value != value.strip():
        raise ChatLabError(f"A user id has no spaces around it: {value.strip()!r}, not {value!r}.")
    if len(value) > 256:
        raise ChatLabError(f"A user id has at most 256 characters, not {len(value)}.")
    return value


class Authenticator:
    """Who is asking: the verified ``sub`` of a Bearer token when ``verifier`` is set, else
    ``user_id``. The comm tunnel and the HTTP endpoint both ask this one object."""

    def __init__(self, verifier: JWKSVerifier | None = None, user_id: str = "local") -> None:
        self.verifier, self.user_id = verifier, user_id

    @property
    def user_id(self) -> str:
        return self._user_id

    @user_id.setter
    def user_id(self, value: str) -> None:
        self._user_id = checked_user_id(value)

    async def identify(self, headers: Mapping[str, str] | None) -> Identity:
        if self.verifier is None:
            return Identity(self.user_id)
        authorization = {k.lower(): v for k, v in (headers or {}).items()}.get("authorization")
        if self.verifier.url:  # may fetch the JWKS over the network
            return await asyncio.to_thread(self.verifier.verify, authorization)
        return self.verifier.verify(authorization)
