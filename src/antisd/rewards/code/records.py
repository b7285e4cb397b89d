"""Reading what a sandboxed program sends back: streaming, size-capped, in linear time.

Everything on the result channel is written by untrusted code (the driver runs in the same
process as the program, which can overwrite it), so the trusted side reads it under rules that
bound its own work, whatever arrives:

- **Lines, capped.** Records are JSON lines. A line longer than ``max_record_bytes`` is never
  held: its bytes are dropped as they arrive and the input it names (if any) is marked
  ``too_large``. All bytes together are capped at ``max_total_bytes`` (the run is then ended with
  status ``output_limit``). Memory is bounded by the caps, time is linear in the bytes read.
- **One record per input, in range, in order.** An item record starts with ``{"i": K, `` where K
  is the next expected index or later (skipped inputs stay missing); a record for an index
  already seen, out of range or out of order is counted as malformed and dropped. Items are kept
  as raw bytes and decoded one at a time when judged (`antisd.rewards.code.harness`), so the decoded
  objects of one record at most are alive at once. Indices never become keys of a hash table.
- **Control records** (``ready``, ``done``, ``load_error``, ``run_error``) are small JSON objects of
  a fixed shape; anything else is malformed.
- **Time, measured here.** The program must load (``ready``) within ``load_limit_s`` of `begin`;
  no item counts before it, so work done at load time cannot dodge the per-input limits. Each item's ``elapsed_s`` is the time between its arrival and the
  arrival of the record before it (``ready`` for the first input), so an input's time is what
  the trusted side saw, not what the program reports. With per-input ``time_limits`` an item that
  arrives late is ``late``, and `deadline` tells the reader's caller when to kill the run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_ITEM_PREFIX = re.compile(rb'\{"i": (0|[1-9][0-9]{0,9})[,}]')
_CONTROL_MAX_BYTES = 4096
_CONTROL_KEYS = {"ready": bool, "done": bool, "load_error": str, "run_error": str}


@dataclass
class Item:
    """The one record kept for an input: raw JSON (None when it was too large) and its timing."""

    raw: bytes | None
    elapsed_s: float | None = None
    late: bool = False

    @property
    def too_large(self) -> bool:
        return self.raw is None


@dataclass
class RecordReader:
    """Incremental reader of one run's result channel (module docstring).

    n_items: how many item records the request asks for. time_limits: seconds per item, or None.
    grace_s: how long after an item's limit the run may go on before `deadline` says to kill it
    (time for a cooperative in-sandbox alarm to report the timeout and move to the next input).
    """

    n_items: int
    max_record_bytes: int
    max_total_bytes: int
    time_limits: list[float] | None = None
    grace_s: float = 0.25
    load_limit_s: float | None = None
    items: list[Item | None] = field(init=False)
    control: dict[str, object] = field(default_factory=dict)
    malformed: int = 0
    total_bytes: int = 0
    next_index: int = 0
    _partial: bytearray = field(default_factory=bytearray)
    _dropping: bool = False
    _last: float | None = None
    _start: float | None = None

    def __post_init__(self) -> None:
        self.items = [None] * self.n_items
        if self.time_limits is not None and len(self.time_limits) != self.n_items:
            raise ValueError(f"{len(self.time_limits)} time limits for {self.n_items} items")

    @property
    def over_limit(self) -> bool:
        return self.total_bytes > self.max_total_bytes

    @property
    def final(self) -> bool:
        """A closing control record arrived (done, load_error or run_error)."""
        return any(key in self.control for key in ("done", "load_error", "run_error"))

    def begin(self, now: float) -> None:
        """The request was sent at `now` (the load limit counts from here)."""
        self._start = now

    def deadline(self) -> float | None:
        """When the program must have loaded, or the input now running must have reported (plus grace);
        None when no such limit applies."""
        if "ready" not in self.control:
            if self.load_limit_s is None or self._start is None:
                return None
            return self._start + self.load_limit_s
        if self.time_limits is None or self._last is None or self.next_index >= self.n_items:
            return None
        return self._last + self.time_limits[self.next_index] + self.grace_s

    def feed(self, chunk: bytes, now: float | None) -> None:
        """Take the next bytes of the channel; `now` is their arrival time (None: unknown)."""
        self.total_bytes += len(chunk)
        start = 0
        while start < len(chunk) and not self.over_limit:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not self._dropping:
                room = self.max_record_bytes - len(self._partial)
                if len(piece) > room:
                    self._oversize(bytes(self._partial[:64]) + piece[:64], now)
                    self._partial.clear()
                    self._dropping = True
                else:
                    self._partial += piece
            if end < 0:
                return
            if self._dropping:
                self._dropping = False
            else:
                self._line(bytes(self._partial), now)
                self._partial.clear()
            start = end + 1

    def _accept(self, index: int, item: Item, now: float | None) -> None:
        if now is not None and self._last is not None:
            item.elapsed_s = now - self._last
            item.late = self.time_limits is not None and item.elapsed_s > self.time_limits[index]
        self.items[index] = item
        self.next_index = index + 1
        self._last = now

    def _index(self, head: bytes) -> int | None:
        match = _ITEM_PREFIX.match(head)
        if match is None:
            return None
        index = int(match.group(1))
        return index if self.next_index <= index < self.n_items else None

    def _oversize(self, head: bytes, now: float | None) -> None:
        index = self._index(head) if "ready" in self.control else None
        if index is None:
            self.malformed += 1
        else:
            self._accept(index, Item(raw=None), now)

    def _line(self, line: bytes, now: float | None) -> None:
        if not line.strip():
            return
        if line.startswith(b'{"i": '):
            index = self._index(line[:24]) if "ready" in self.control else None  # no output before the program loaded
            if index is None:
                self.malformed += 1
            else:
                self._accept(index, Item(raw=line), now)
            return
        value = None
        if len(line) <= _CONTROL_MAX_BYTES:
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                value = None
        if type(value) is not dict or len(value) != 1:
            self.malformed += 1
            return
        (key, payload), = value.items()
        kind = _CONTROL_KEYS.get(key)
        if kind is None or type(payload) is not kind or key in self.control:
            self.malformed += 1
            return
        self.control[key] = payload
        if key == "ready":
            self._last = now
