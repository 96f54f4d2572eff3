"""File input/output: g2o / TORO pose graphs and TUM trajectories."""
from .g2o import read_pose_graph, write_g2o
from .tum import read_tum, write_tum

__all__ = ["read_pose_graph", "write_g2o", "read_tum", "write_tum"]
