"""`dgss` command line."""
import sys


def main(argv=None) -> int:
    print("dgss: nothing here yet", file=sys.stderr)
    return 1
