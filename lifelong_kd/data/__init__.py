"""Data: the dataset registry (sources.py) and one reader per format (files -> uint8 tensors,
cached), the facts known of each dataset, streams (tasks), augmentation."""
