"""Latency recording for benchmarks: an HdrHistogram, never a list of samples.

``LatencyRecorder`` owns one ``hdrh`` histogram at microsecond resolution over
1 µs .. 60 s with 3 significant digits (about 0.1 % relative error), so memory
stays fixed however many operations a run records. Latencies arrive in seconds
(the unit of ``time.perf_counter``) and leave in milliseconds (the unit people
read in a table). Values outside the range are clamped to its ends and counted,
so one stall longer than a minute shows up as ``clamped`` instead of vanishing.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

LATENCY_US_MIN = 1
LATENCY_US_MAX = 60_000_000  # 60 s
SIGNIFICANT_DIGITS = 3

MICROSECONDS_PER_SECOND = 1_000_000
MICROSECONDS_PER_MILLISECOND = 1_000

# (summary key, percentile) in the order a summary lists them.
PERCENTILES = (("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("p999_ms", 99.9))


class LatencyRecorder:
    """Counts latencies into a fixed-size histogram; merge recorders from several workers."""

    __slots__ = ("_histogram", "clamped_count")

    def __init__(self) -> None:
        self._histogram = HdrHistogram(LATENCY_US_MIN, LATENCY_US_MAX, SIGNIFICANT_DIGITS)
        self.clamped_count = 0

    @property
    def count(self) -> int:
        return self._histogram.get_total_count()

    def record(self, latency_s: float, count: int = 1) -> None:
        """Record ``count`` operations that each took ``latency_s`` seconds.

        ``count`` > 1 is for a batch whose operations all completed together:
        one histogram update instead of one per operation.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        latency_us = round(latency_s * MICROSECONDS_PER_SECOND)
        if latency_us < LATENCY_US_MIN or latency_us > LATENCY_US_MAX:
            latency_us = min(max(latency_us, LATENCY_US_MIN), LATENCY_US_MAX)
            self.clamped_count += count
        if not self._histogram.record_value(latency_us, count):
            raise RuntimeError(f"histogram refused an in-range value: {latency_us} us")

    def merge(self, other: LatencyRecorder) -> None:
        """Add every value recorded by ``other`` into this recorder (``other`` is unchanged)."""
        if not isinstance(other, LatencyRecorder):
            raise TypeError(f"can only merge a LatencyRecorder, not {type(other).__name__}")
        self._histogram.add(other._histogram)
        self.clamped_count += other.clamped_count

    def summary(self) -> dict[str, float | int]:
        """``count`` and p50/p90/p99/p99.9/max in milliseconds; all zero when empty."""
        histogram = self._histogram
        total = histogram.get_total_count()
        result: dict[str, float | int] = {"count": total}
        for key, percentile in PERCENTILES:
            result[key] = _ms(histogram.get_value_at_percentile(percentile)) if total else 0.0
        result["max_ms"] = _ms(histogram.get_max_value()) if total else 0.0
        return result


def _ms(latency_us: int) -> float:
    return latency_us / MICROSECONDS_PER_MILLISECOND
