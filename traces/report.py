"""What loading a trace file found: malformed input (an error) and hygiene findings (a report)."""

from __future__ import annotations

from dataclasses import dataclass


class TraceFormatError(ValueError):
    """A trace file that cannot be read as its format says.

    The message is one line, ``<file>:<line>: <problem>`` (without ``:<line>`` when the problem
    is not on one line, e.g. an empty file), so a CLI can print it as it is.

    Attributes:
        path: The file.
        line: 1-based line number of the offending row, or None.
        problem: What is wrong, without the location.
    """

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = " ".join(str(problem).split())  # one line, always
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {self.problem}")


def check_text(path: str, data: bytes) -> None:
    """Refuse binary data given as a text trace (one line, no raw bytes echoed).

    Raises:
        TraceFormatError: a NUL byte in the first 64 KiB, or a first line that is not UTF-8.
    """
    head = data[: 1 << 16]
    if b"\x00" in head:
        raise TraceFormatError(path, None, "binary data (NUL bytes), not a text trace file")
    first = head.split(b"\n", 1)[0]
    try:
        first.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(first) < len(head) or exc.start < len(first) - 4:  # not a cut multi-byte char
            raise TraceFormatError(path, 1, "the first line is not UTF-8 text (a binary "
                                            "file?)") from None


def printable(text: str, limit: int = 80) -> str:
    """``text`` for a one-line message: control characters escaped, at most ``limit`` chars."""
    out = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text.strip())
    return out if len(out) <= limit else out[: limit - 3] + "..."


@dataclass(frozen=True)
class TraceReport:
    """Counts and messages from loading and cleaning one trace.

    Every row read ends up either kept or in exactly one skip count, so
    ``rows_read == rows_kept + skipped_zero_size + skipped_ramp + cut_rows``; nothing is lost
    silently.

    Attributes:
        source: File (or data set) the report is about.
        rows_read: Data rows in the file.
        rows_kept: Rows the replay uses.
        zero_size_rows: Rows whose size was 0 (dropped when ``zero_size="skip"``).
        skipped_zero_size: Zero-size rows dropped.
        unsorted_rows: Rows whose time is earlier than the previous row's, in file order
            (the rows are sorted by time, stably, on load).
        tied_rows: Rows (after sorting) with the same time as the row before them.
        quantum_s: Resolution of the timestamps when at least 99 % of them are multiples of a
            coarse quantum (1 us ... 60 s), else None.
        quantized: True when ``quantum_s`` is coarse enough to matter: at least 1 % of the mean
            inter-arrival time (then ``spread_quantized`` may spread requests in their slot).
        ramp_up_s: Length of a leading period whose rate stays below ``ramp_threshold`` times
            the steady (median) rate; 0 when there is none.
        ramp_up_rows: Rows inside that leading period.
        ramp_down_s: Same for a trailing period.
        ramp_down_rows: Rows inside the trailing period.
        skipped_ramp: Ramp rows dropped (``trim_ramp=True``).
        cut_rows: Rows outside ``[start_s, end_s)`` (a cut window), dropped.
        messages: Human-readable findings, one line each.
        warnings: The findings that suggest a damaged file (rows out of time order, a gap or a
            time far beyond the rest); also in ``messages``. Apps print them as warnings.
    """

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    zero_size_rows: int = 0
    skipped_zero_size: int = 0
    unsorted_rows: int = 0
    tied_rows: int = 0
    quantum_s: float | None = None
    quantized: bool = False
    ramp_up_s: float = 0.0
    ramp_up_rows: int = 0
    ramp_down_s: float = 0.0
    ramp_down_rows: int = 0
    skipped_ramp: int = 0
    cut_rows: int = 0
    messages: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def skipped(self) -> int:
        """All rows read but not replayed."""
        return self.skipped_zero_size + self.skipped_ramp + self.cut_rows

    def __str__(self) -> str:
        head = (f"{self.source}: {self.rows_read} rows read, {self.rows_kept} kept, "
                f"{self.skipped} skipped")
        return "\n".join([head, *(f"  - {m}" for m in self.messages)])
