"""Mask-DPO on XTuner."""
