"""How the coordinator is driven: `seal-lab`, an HTTP client of the API (httpx), and the commands that start
a local stack (`demo`, `up`, `down`). It speaks the run vocabulary (run/) and never imports the engine."""
