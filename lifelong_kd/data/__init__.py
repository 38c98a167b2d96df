"""Data: sources (files -> uint8 tensors), streams (tasks), augmentation."""
