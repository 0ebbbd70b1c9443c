"""The serving end of a model service: the gRPC server, the model host, the call gate and the metrics."""
