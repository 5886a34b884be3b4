"""The image modality: PNG/.npy codec, its serve and CLI halves, bench inputs (device) and export feeds (torch)."""
