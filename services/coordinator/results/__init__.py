"""What a run found, computed from its job records: the training rounds, SEAL's held-out conditions and the
planned comparisons between them. Pure functions of the records (no store, no network)."""
