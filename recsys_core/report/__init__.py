"""The evaluation report over several splits and seeds (`python -m recsys_core.report`)."""
