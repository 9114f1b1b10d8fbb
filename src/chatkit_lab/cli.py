"""The `chatkit-lab` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading


def _serve(args: argparse.Namespace) -> int:
    from .lab import ChatLab

    verifier = None
    if args.jwks_url:
        from .auth import JWKSVerifier

        verifier = JWKSVerifier(args.jwks_url, issuer=args.issuer, audience=args.audience)
    elif args.issuer or args.audience:
        print("--issuer and --audience need --jwks-url (where the signing keys are published).", file=sys.stderr)
        return 2
    lab = ChatLab(args.db, model=args.model, base_url=args.base_url, user_id=args.user_id, verifier=verifier,
                  **({"instructions": args.instructions} if args.instructions else {}))
    url = lab.serve(args.host, args.port)
    print(f"chatkit-lab serving {args.db} at {url}/chatkit (health: {url}/health)", flush=True)
    print(f"model: {lab.backend.description}", flush=True)
    print(f"auth: Bearer JWT from {args.jwks_url}" if verifier else f"auth: none, every request acts as {args.user_id!r}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    lab.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chatkit-lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a lab over HTTP: POST /chatkit, GET /health")
    serve.add_argument("--db", default="chats.duckdb", help="DuckDB file (default: chats.duckdb)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", default=None, help="model name (default: offline mirror, or OpenAI with OPENAI_API_KEY)")
    serve.add_argument("--base-url", default=None, help="an OpenAI-compatible server, e.g. http://localhost:11434/v1")
    serve.add_argument("--user-id", default="local", help="the user every request acts as (without --jwks-url)")
    serve.add_argument("--jwks-url", default=None, help="require a Bearer JWT signed by a key from this JWKS URL")
    serve.add_argument("--issuer", default=None, help="the token's required iss claim")
    serve.add_argument("--audience", default=None, help="the token's required aud claim")
    serve.add_argument("--instructions", default=None)
    serve.set_defaults(run=_serve)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
