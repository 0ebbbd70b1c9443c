"""What a run is: the request that starts it and its config, its status and events, its results' shape, its
job names, its train/held-out split and the limits on its request. Vocabulary only: no I/O, and no import of
the other wings, which all speak it (tests/unit/test_architecture.py holds it)."""
