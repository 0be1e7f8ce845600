"""Evals: datasets of items graded by testing criteria, and the runs that sample and grade them."""
