"""`--partition I/N`: which share of the catalog one process takes (rows with id % N == I)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Partition:
    """Share `index` of `count`; 0/1 is the whole catalog."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"partition must be I/N with 0 <= I < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Partition:
        """'2/8' -> Partition(2, 8)."""
        index, separator, count = text.partition("/")
        if not separator or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"partition must look like I/N (e.g. 0/4), got {text!r}")
        return cls(int(index), int(count))

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def key(self) -> str:
        """Stable name for state documents: 'all' or '2of8'."""
        return "all" if self.whole else f"{self.index}of{self.count}"

    def owns(self, row_id: int) -> bool:
        return row_id % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE = Partition()
