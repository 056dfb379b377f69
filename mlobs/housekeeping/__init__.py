"""Deleting what is no longer needed: retention (the gc policy and its pure plan), the
inventory it plans over, carrying a plan out, and forgetting a video.
"""
