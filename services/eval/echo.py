"""A bare FastAPI app that echoes the request body: the HTTP ceiling latentwire-bench compares with.

    python -m latentwire_eval.echo --port 8010
    curl -s --data-binary @digit.png -H 'Content-Type: image/png' http://127.0.0.1:8010/echo

It is served by ``latentwire_http.server.run_app``, the very uvicorn options the services use
(uvloop/httptools when installed, no access log), and imports no torch, so its requests/s are what
FastAPI + uvicorn alone manage on this machine for a body of the same size.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fastapi import FastAPI, Request, Response

from latentwire_http.server import run_app

__all__ = ["create_app", "main"]


def create_app() -> FastAPI:
    app = FastAPI(title="latentwire-bench echo", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    return app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m latentwire_eval.echo", description="POST /echo returns the body."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8010)
    p.add_argument("--log-level", default="warning")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_app(create_app(), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
