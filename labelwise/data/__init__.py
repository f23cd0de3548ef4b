"""Data: sources (formats), the image decoder, splits and the training data pipeline."""
