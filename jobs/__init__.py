"""Apache Beam jobs over model bundles; the logic they run lives in `recsys_core`."""
