"""Raw delivery bodies compressed with a zstd dictionary trained on workflow_job payloads, byte-exact both ways.

A ~8 KB workflow_job body is ~1.8 KB with plain zstd and ~0.25 KB with a dictionary, because most of a payload
(the repository, organisation and sender objects, the URL shapes, the key names) repeats from one delivery to the
next. Each frame names its dictionary by id (zstd's own frame header field, written and checked here) and carries
a checksum of the original bytes, so a body decompresses to exactly what GitHub signed or fails with a clear error.
Dictionaries are never replaced, only added: the shipped ones live in `zdicts/`, ones trained from the live log
(`flask --app app deliveries train-dictionary`) in Redis, and an old record stays readable as long as its
dictionary is kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import redis
import zstandard

from runnerguard.errors import Permanent
from runnerguard.store import keys

log = logging.getLogger("runnerguard.store")
SHIPPED_DIR = Path(__file__).with_name("zdicts")
SHIPPED_ID = 1380384769  # 0x52470001, trained by devtools/train_dictionary.py on ../shared fixtures + generated
RECORD_ID = 1380385025  # 0x52470101: job records (store/jobstore.py), ~2.2 KB of JSON -> ~130 bytes
LEVEL = 7  # 8 KB -> ~0.22 KB in ~18 us (level 3: ~0.32 KB in 7 us; 19: ~0.19 KB in 500 us)
ID_BASE = 0x52470000  # "RG": runnerguard's own ids, in the range zstd leaves to private use
# A frame stored in a hash goes in chunks of at most this many bytes: Redis keeps a hash as a compact listpack only
# while every value is at most 64 bytes (one longer value makes the whole hash a hashtable, ~3x the bytes), and a
# listpack string of up to 63 bytes has a 1-byte header, one of 64 a 2-byte one.
LISTPACK_CHUNK = 63
MAX_BODY = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB: a frame that claims more is refused


class BodyError(Permanent):
    """A stored body cannot be restored: unknown dictionary, or corrupted bytes. Never silently wrong bytes."""


def _shipped() -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for path in sorted(SHIPPED_DIR.glob("*.zdict")):
        found[int(path.stem)] = path.read_bytes()
    return found


class BodyCodec:
    """Compress with the active dictionary; decompress with whichever dictionary a frame names. Thread-safe."""

    def __init__(self, client: redis.Redis | None = None, *, active: int | None = None) -> None:
        self._client = client
        self._raw: dict[int, bytes] = _shipped()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._active = active

    @property
    def active(self) -> int:
        """The id new bodies are compressed with, read once (lazily: a web tier starts while Redis is down)."""
        if self._active is None:
            value = self._client.get(keys.BODY_DICTIONARY_ACTIVE) if self._client is not None else None
            chosen = int(value) if value else SHIPPED_ID if SHIPPED_ID in self._raw else 0
            if chosen != 0 and self._dictionary_bytes(chosen) is None:
                # Refusing every delivery over it would lose more than compressing with the shipped dictionary.
                log.error("the active body dictionary %s is neither shipped nor in Redis; using %s", chosen,
                          SHIPPED_ID)
                chosen = SHIPPED_ID
            self._active = chosen
        return self._active

    def _dictionary_bytes(self, dict_id: int) -> bytes | None:
        with self._lock:
            if dict_id in self._raw:
                return self._raw[dict_id]
        if self._client is None:
            return None
        data = self._client.hget(keys.BODY_DICTIONARIES, str(dict_id))
        if data is None:
            return None
        with self._lock:
            self._raw[dict_id] = bytes(data)  # type: ignore[arg-type]
        return self._raw[dict_id]

    def _per_thread(self, kind: str, dict_id: int) -> zstandard.ZstdCompressor | zstandard.ZstdDecompressor:
        # zstd contexts are not thread-safe; one per thread and dictionary keeps the dictionary digested once.
        cache: dict[tuple[str, int], object] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        if (kind, dict_id) not in cache:
            raw = self._dictionary_bytes(dict_id) if dict_id else None
            if dict_id and raw is None:
                raise BodyError(f"body was compressed with dictionary {dict_id}, which this install does not have "
                                "(shipped dictionaries: runnerguard/store/zdicts; trained ones: Redis rg:zdicts)")
            data = zstandard.ZstdCompressionDict(raw) if raw is not None else None
            if kind == "c":
                cache[(kind, dict_id)] = zstandard.ZstdCompressor(
                    level=LEVEL, dict_data=data, write_checksum=True, write_content_size=True, write_dict_id=True)
            else:
                cache[(kind, dict_id)] = zstandard.ZstdDecompressor(dict_data=data)
        return cache[(kind, dict_id)]  # type: ignore[return-value]

    def compress(self, body: bytes, *, dict_id: int | None = None) -> tuple[int, bytes]:
        """(the dictionary id, the zstd frame) of a raw body; `dict_id` another dictionary than the active one."""
        chosen = self.active if dict_id is None else dict_id
        compressor = self._per_thread("c", chosen)
        return chosen, compressor.compress(body)  # type: ignore[union-attr]

    def decompress(self, dict_id: int, frame: bytes) -> bytes:
        """The exact raw body, or BodyError saying why not."""
        try:
            params = zstandard.get_frame_parameters(frame)
        except zstandard.ZstdError as exc:
            raise BodyError(f"stored body is corrupted (not a zstd frame: {exc})") from None
        if params.dict_id != dict_id:
            raise BodyError(f"stored body is corrupted (its frame names dictionary {params.dict_id}, "
                            f"the delivery {dict_id})")
        if params.content_size > MAX_BODY:
            raise BodyError("stored body is corrupted (claims more than 25 MB)")
        decompressor = self._per_thread("d", dict_id)
        try:
            return decompressor.decompress(frame)  # type: ignore[union-attr]
        except zstandard.ZstdError as exc:
            raise BodyError(f"stored body is corrupted ({exc})") from None


def split_frame(frame: bytes) -> list[bytes]:
    """The frame in LISTPACK_CHUNK-byte chunks, in order (a hash's fields "0", "1", ... in both stored layouts)."""
    return [frame[start:start + LISTPACK_CHUNK] for start in range(0, len(frame), LISTPACK_CHUNK)]


def frame_dict_id(frame: bytes) -> int:
    """The dictionary id a frame's header names (0: none)."""
    try:
        return int(zstandard.get_frame_parameters(frame).dict_id)
    except zstandard.ZstdError as exc:
        raise BodyError(f"stored value is corrupted (not a zstd frame: {exc})") from None


def train(samples: Sequence[bytes], *, dict_id: int, size: int = 16384) -> bytes:
    """A new dictionary from sample bodies (at least a few hundred for a useful one)."""
    if len(samples) < 20:
        raise BodyError(f"{len(samples)} sample bodies are too few to train a dictionary (need at least 20)")
    try:
        return bytes(zstandard.train_dictionary(size, list(samples), dict_id=dict_id, level=19).as_bytes())
    except zstandard.ZstdError as exc:
        raise BodyError(f"training failed: {exc}") from None


def store_dictionary(client: redis.Redis, dict_id: int, data: bytes, *, activate: bool) -> None:
    """Keep a trained dictionary (forever: records compressed with it need it) and optionally make it the active one."""
    pipe = client.pipeline(transaction=True)
    pipe.hsetnx(keys.BODY_DICTIONARIES, str(dict_id), data)
    if activate:
        pipe.set(keys.BODY_DICTIONARY_ACTIVE, str(dict_id))
    pipe.execute()


def next_id(client: redis.Redis) -> int:
    """The id for the next trained dictionary: above every shipped and stored one."""
    known = set(_shipped()) | {int(k) for k in client.hkeys(keys.BODY_DICTIONARIES)}
    return max([ID_BASE, *known]) + 1
