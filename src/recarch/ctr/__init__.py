"""CTR track: tabular click data, hand-designed CTR models, the NASRec-style supernet and its
hardware (processing-in-memory) co-design search (DESIGN.md §4)."""
