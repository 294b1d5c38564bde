"""Data: ImageNet's on-disk layouts, Parquet shards, augmentation, Ray Data pipelines."""
