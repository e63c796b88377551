"""Measured accuracy: open-set identification, 1:1 verification, enrolment and capture
failure rates, per-group differentials, bootstrap confidence intervals, threshold
calibration per gallery size, and a report a person can read.

Every score is the cosine similarity of unit vectors (the product's one score
convention); a decision is "same person / alert" when score >= threshold.
"""
