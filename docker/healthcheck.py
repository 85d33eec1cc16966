"""Container health check: exit 0 when the service in this container answers GET /readyz with 200."""

import os
import sys
import urllib.request

port = os.environ.get("LATENTWIRE_PORT") or (sys.argv[1] if len(sys.argv) > 1 else "8001")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # any failure means "not ready"
    print(f"not ready: {exc}", file=sys.stderr)
    sys.exit(1)
