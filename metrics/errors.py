class MetricError(Exception):
    """A failure a person must act on: missing weights, unreadable images, too few images."""
