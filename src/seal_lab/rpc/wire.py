"""What both ends of a seal gRPC call agree on, beside the protos: message size and trailing metadata.

Shared by `grpc_server` (which sets them) and `grpc_client` (which reads them), so neither imports the other.
"""

from __future__ import annotations

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Trailing metadata on an UNAVAILABLE that the object store caused (down, timed out, full), so a caller can
#: wait the outage out instead of counting it against the service.
CAUSE_KEY = "seal-cause"
STORE_CAUSE = "store"
BUSY_CAUSE = "busy"
