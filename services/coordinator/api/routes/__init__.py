"""The coordinator's HTTP routes, one router per resource: runs, results, events (and health)."""
