"""What both ends of a seal gRPC call agree on, and the calling end: channels, wire constants, the token,
call ids, the container probe and the stubs' generator."""
