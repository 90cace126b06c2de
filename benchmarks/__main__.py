"""``python -m benchmarks``: the published suite (``benchmarks.suite``, docs/benchmarks.md)."""

from __future__ import annotations

import sys

from benchmarks.suite import main

sys.exit(main())
