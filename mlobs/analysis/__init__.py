"""The read side over the warehouse, never on the write path: DuckDB connections and the
component rollups, the statistics and the drift checks (the release gate will live
here).
"""
