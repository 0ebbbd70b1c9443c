"""The evaluator's cache key: one entry per exact adapter key, never shaped like an entry of the earlier
scheme (`evaluations/<model>/<questions>/<adapter key with '/' as '-'>.json`, where `adapters/x`,
`adapters-x` and the adapter key `baseline` met)."""

from __future__ import annotations

from seal_lab.store import validate_key
from services.evaluator.server import BASELINE, CACHE_PREFIX, evaluation_cache_key

FINGERPRINT = "0123456789abcdef01234567"
QUESTIONS = "f" * 32


def test_adapter_keys_that_look_alike_get_their_own_cache_keys():
    sha = "a" * 64
    adapters = [BASELINE, "baseline", f"adapters/{sha}", f"adapters-{sha}", "a/b-c", "a-b/c", "a/b/c"]
    keys = [evaluation_cache_key(FINGERPRINT, adapter, QUESTIONS) for adapter in adapters]
    assert len(set(keys)) == len(adapters)
    for key in keys:
        validate_key(key)
        # Under the model's prefix, one level shallower than the earlier scheme's entries: none is read anew.
        assert key.startswith(f"{CACHE_PREFIX}/{FINGERPRINT}/") and key.count("/") == 2
    # The question set and the model are part of it; the same inputs give the same key.
    assert evaluation_cache_key(FINGERPRINT, "a/b", "e" * 32) != evaluation_cache_key(
        FINGERPRINT, "a/b", QUESTIONS
    )
    assert evaluation_cache_key("f" * 24, "a/b", QUESTIONS) != evaluation_cache_key(
        FINGERPRINT, "a/b", QUESTIONS
    )
    assert evaluation_cache_key(FINGERPRINT, "a/b", QUESTIONS) == evaluation_cache_key(
        FINGERPRINT, "a/b", QUESTIONS
    )
