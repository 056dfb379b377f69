"""``make bench``: every benchmark, each printing figures measured in this same run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_async  # noqa: E402
import bench_cache  # noqa: E402
import bench_drift  # noqa: E402
import bench_ingest  # noqa: E402
import bench_overhead  # noqa: E402
import bench_pg_ingest  # noqa: E402
import bench_rollup  # noqa: E402

if __name__ == "__main__":
    bench_overhead.main()
    print()
    bench_ingest.main()
    print()
    bench_pg_ingest.main()  # prints a SKIPPED line when PostgreSQL is unreachable
    print()
    bench_cache.main()
    print()
    bench_async.main()
    print()
    bench_drift.main()
    print()
    bench_rollup.main()  # 10M rows on SQLite: about 4 minutes
