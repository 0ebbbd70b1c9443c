"""How the coordinator is served: the FastAPI app, its dependencies, routes, errors, paging and rate limits.
It reaches the engine only through `services.coordinator.engine`'s exports."""
