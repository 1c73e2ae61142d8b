"""Largest-triangle-three-buckets: a curve of 100,000 points drawn with a thousand that look the same.

Sveinn Steinarsson's algorithm (2013): the first and last points stay; each bucket between keeps
the point that makes the largest triangle with the point kept before it and the mean of the
next bucket. The lowest and highest points are added back where LTTB passed them over, so a
loss spike or the best loss never disappears from the chart.
"""

from __future__ import annotations


def lttb(xs: list, ys: list, threshold: int) -> tuple[list, list]:
    """(xs, ys) thinned to about threshold points (+2 for the extremes), shape and extremes kept."""
    n = len(xs)
    if threshold >= n or threshold < 3:
        return list(xs), list(ys)
    keep = [0]
    every = (n - 2) / (threshold - 2)
    a = 0
    for i in range(threshold - 2):
        start, end = int(i * every) + 1, int((i + 1) * every) + 1
        nxt_end = min(int((i + 2) * every) + 1, n)
        span = nxt_end - end or 1
        avg_x = sum(xs[end:nxt_end]) / span if nxt_end > end else xs[n - 1]
        avg_y = sum(ys[end:nxt_end]) / span if nxt_end > end else ys[n - 1]
        ax, ay = xs[a], ys[a]
        best, best_area = start, -1.0
        for j in range(start, min(end, n - 1)):
            area = abs((ax - avg_x) * (ys[j] - ay) - (ax - xs[j]) * (avg_y - ay))
            if area > best_area:
                best, best_area = j, area
        keep.append(best)
        a = best
    keep.append(n - 1)
    chosen = sorted(set(keep) | {min(range(n), key=ys.__getitem__), max(range(n), key=ys.__getitem__)})
    return [xs[i] for i in chosen], [ys[i] for i in chosen]
