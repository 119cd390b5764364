"""Baseline task for the worker benchmark: does nothing."""


def noop(_guid: str) -> None:
    return None
