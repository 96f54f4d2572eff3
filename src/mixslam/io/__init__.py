"""File input/output: g2o / TORO pose graphs, TUM trajectories and BAL bundle-adjustment problems."""

from .bal import read_bal, write_bal
from .g2o import read_pose_graph, write_g2o
from .tum import read_tum, write_tum

__all__ = ["read_pose_graph", "write_g2o", "read_tum", "write_tum", "read_bal", "write_bal"]
