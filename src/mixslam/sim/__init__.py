"""Seeded simulators with ground truth."""

from .pose_graph import KINDS, SimulatedPoseGraph, simulate_pose_graph

__all__ = ["simulate_pose_graph", "SimulatedPoseGraph", "KINDS"]
