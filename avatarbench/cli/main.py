"""Placeholder entry point; replaced by the real CLI."""


def main():  # pragma: no cover
    raise SystemExit("avatarbench CLI not built yet")
