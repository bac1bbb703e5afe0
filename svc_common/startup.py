"""What every process (a service, the gateway) does once it has loaded everything."""
import gc


def freeze_startup_objects() -> None:
    """Move everything loaded at start (modules, SQLAlchemy metadata, pydantic models: ~100,000
    objects) out of the cyclic garbage collector's reach. They live as long as the process, and
    every full collection walked them again: a 60–90 ms pause every fifth or sixth report query
    (personnel report over a month, 30 runs: slowest 137 → 62 ms, median unchanged at ~50 ms)."""
    gc.collect()
    gc.freeze()
