"""Seeded simulators with ground truth."""

from .generate import (
    PGO_KINDS,
    BundleGenConfig,
    GeneratedBundle,
    GeneratedPoseGraph,
    generate_bundle,
    generate_pose_graph,
    truth_path,
)
from .pose_graph import KINDS, SimulatedPoseGraph, simulate_pose_graph

__all__ = [
    "simulate_pose_graph",
    "SimulatedPoseGraph",
    "KINDS",
    "generate_bundle",
    "generate_pose_graph",
    "BundleGenConfig",
    "GeneratedBundle",
    "GeneratedPoseGraph",
    "PGO_KINDS",
    "truth_path",
]
