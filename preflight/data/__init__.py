"""Dataset readers, normalization, near-duplicate and contamination detection, splitting, cleaning.

Everything here imports pyarrow/numpy, so the check path only imports it when a spec declares data.
"""
