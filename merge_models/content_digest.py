"""Fast content digests of merged shards, so that a cache entry whose bytes changed is never served.

xxh3-128 hashes at several GB/s on one core, faster than the files can be read from disk, so
checking every byte of a cache entry on every hit costs about one extra read from the page cache.
A shard's digest is taken as it is written (merge_models.safetensors_writer), so writing costs no re-read.
It guards against corruption (bit rot, a torn copy, an edited file), not against someone who may
also rewrite the manifest.
"""

from __future__ import annotations

from pathlib import Path

import xxhash

ALGORITHM = "xxh3_128"
# Files are hashed through one reused buffer of this size: a memory map would keep every page it
# touched resident (in the process's RSS) until unmapped, a whole multi-GB shard at real size.
READ_BYTES = 16 * 2**20


def content_digest(path: Path, start: int = 0, digest: xxhash.xxh3_128 | None = None) -> str:
    """The xxh3-128 digest (hex) of a file's bytes from `start` on, continuing `digest` when given
    (it must then have hashed the bytes before `start`). Memory stays at one READ_BYTES buffer."""
    digest = digest or xxhash.xxh3_128()
    buffer = bytearray(READ_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        handle.seek(start)
        while count := handle.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()
