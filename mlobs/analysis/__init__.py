"""The read side over the warehouse, never on the write path: DuckDB connections and the
component rollups (drift checks and the release gate will live here).
"""
