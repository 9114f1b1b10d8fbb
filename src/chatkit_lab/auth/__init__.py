"""Authentication and credentials: JWT issuing and strict JWKS verification, named secrets and
their redaction, MCP credentials injected on the server, and the httpOnly cookie proxy."""

from ..errors import AuthError
from .jwt import Authenticator, Identity, JWKSVerifier, LocalIssuer
from .mcp import mcp_server
from .secrets import Secrets

__all__ = ["AuthError", "Authenticator", "Identity", "JWKSVerifier", "LocalIssuer", "Secrets", "mcp_server"]
