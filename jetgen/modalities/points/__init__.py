"""The points modality (point clouds and meshes): codec, PointModel, serve and CLI halves, bench inputs
(device) and export settings and feeds (torch)."""
