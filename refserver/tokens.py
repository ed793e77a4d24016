"""JWTs of both APIs, signed ES256 with a key pair kept in the data dir.

Comms tokens carry exactly the real claims (``iss``, ``aud``, ``iat``, ``exp = iat + 900``,
``uuid``). The server's clock can be shifted (``--clock-skew``) so tests can reproduce an agent
whose clock disagrees with the server's. Revoking every token issued so far rotates the key
pair: old signatures stop verifying, exactly like a key change on the real server.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from refserver import errors
from refserver.errors import HTTPError

ISSUER = "wazuh"
COMMS_AUDIENCE = "Wazuh Communications API"
MANAGEMENT_AUDIENCE = "Wazuh API REST"
ALGORITHM = "ES256"
#: lifetime of every token (seconds); the comms API rejects any other exp - iat
LIFETIME = 900


class Clock:
    """The server's notion of now: the host clock plus a skew that admins may change."""

    def __init__(self, skew: float = 0.0) -> None:
        self.skew = skew

    def now(self) -> float:
        return time.time() + self.skew


@dataclass
class _Keys:
    private: ec.EllipticCurvePrivateKey
    public: ec.EllipticCurvePublicKey


class TokenIssuer:
    """Issues and checks tokens; the key pair lives in ``<data_dir>/keys``."""

    def __init__(self, key_dir: Path, clock: Clock) -> None:
        self.key_dir = key_dir
        self.clock = clock
        self._lock = threading.Lock()
        self._keys = self._load_or_create()

    # -- keys -------------------------------------------------------------------------------
    def _load_or_create(self) -> _Keys:
        path = self.key_dir / "private.pem"
        if path.exists():
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(private, ec.EllipticCurvePrivateKey)
            return _Keys(private, private.public_key())
        return self._generate()

    def _generate(self) -> _Keys:
        self.key_dir.mkdir(parents=True, exist_ok=True)
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # Written atomically with 0600: a half-written key would lock every agent out.
        tmp = self.key_dir / "private.pem.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, self.key_dir / "private.pem")
        (self.key_dir / "public.pem").write_bytes(public)
        return _Keys(private, private.public_key())

    def rotate(self) -> None:
        """Revoke every token issued so far by changing the signing key."""
        with self._lock:
            self._keys = self._generate()

    # -- tokens -----------------------------------------------------------------------------
    def issue(self, audience: str, subject: dict[str, Any]) -> str:
        iat = int(self.clock.now())
        claims = {"iss": ISSUER, "aud": audience, "iat": iat, "exp": iat + LIFETIME, **subject}
        return jwt.encode(claims, self._keys.private, algorithm=ALGORITHM)

    def comms_token(self, uuid: str) -> str:
        return self.issue(COMMS_AUDIENCE, {"uuid": uuid})

    def management_token(self, user: str) -> str:
        return self.issue(MANAGEMENT_AUDIENCE, {"sub": user})

    def decode(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of a valid token; raises :class:`HTTPError` 403 like the comms API.

        exp and iat are checked against the server's (possibly skewed) clock, not PyJWT's.
        """
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._keys.public,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=ISSUER,
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
            exp, iat = claims["exp"], claims["iat"]
            if not isinstance(exp, int) or not isinstance(iat, int):
                raise jwt.InvalidTokenError("exp and iat must be integers")
        except (jwt.PyJWTError, KeyError) as exc:
            raise HTTPError(403, "Invalid authentication token", errors.INVALID_TOKEN) from exc
        if exp - iat != LIFETIME:
            raise HTTPError(403, "Invalid authentication token", errors.INVALID_TOKEN)
        if exp <= int(self.clock.now()):
            raise HTTPError(403, "Authentication token expired", errors.TOKEN_EXPIRED)
        return claims
