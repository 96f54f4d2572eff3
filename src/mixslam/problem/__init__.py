"""Problems: the pose graph and its factors."""

from .pose_graph import PoseGraph, check_connected, check_information, indefinite_edges, repair_information

__all__ = ["PoseGraph", "check_connected", "check_information", "indefinite_edges", "repair_information"]
