"""make bench-al: Carve's learner against established active-learning strategies on real data."""
