"""Container health check: exit 0 when the service in this container answers GET /readyz with 200.

    python3 healthcheck.py sender      # or receiver

The port is the one the service itself reads: ``LATENTWIRE_<SERVICE>_PORT``, else
``LATENTWIRE_PORT``, else the service's default (sender 8001, receiver 8002). An empty variable
counts as unset, as it does for the services. (A port number as the argument is still accepted.)
"""

import os
import sys
import urllib.request

DEFAULT_PORTS = {"sender": "8001", "receiver": "8002"}

arg = sys.argv[1] if len(sys.argv) > 1 else "sender"
if arg.isdigit():
    port = os.environ.get("LATENTWIRE_PORT") or arg
else:
    port = (
        os.environ.get(f"LATENTWIRE_{arg.upper()}_PORT")
        or os.environ.get("LATENTWIRE_PORT")
        or DEFAULT_PORTS.get(arg, "8001")
    )
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # any failure means "not ready"
    print(f"not ready: {exc}", file=sys.stderr)
    sys.exit(1)
