"""The SLAM pipeline: sliding-window visual odometry, loop-closure verification, the growing pose graph."""
