#!/usr/bin/env python3
"""Read every Parquet file of a vaelab sweep with Python Polars and PyArrow; print their schemas as JSON.

  python3 scripts/check_parquet.py runs/<experiment>/<sweep-id>

Both readers must agree on rows and types; the test suite (tests/real_readers.rs) checks the types against the
schemas documented in the README.
"""
import glob, json, os, sys

import polars as pl
import pyarrow.parquet as pq


def main(sweep):
    out = {}
    for path in sorted(glob.glob(os.path.join(sweep, "trials.parquet")) + glob.glob(os.path.join(sweep, "*", "metrics.parquet"))):
        df = pl.read_parquet(path)
        table = pq.read_table(path)
        assert table.num_rows == df.height, path
        assert table.column_names == df.columns, path
        out[os.path.relpath(path, sweep)] = {
            "rows": df.height,
            "polars": {c: str(t) for c, t in df.schema.items()},
            "arrow": {f.name: str(f.type) for f in table.schema},
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
