"""The Beam-free kernel the job and the evaluation call.

Query policy, scoring, ANN, re-rank, output tables, row validation.
"""
