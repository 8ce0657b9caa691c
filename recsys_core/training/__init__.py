"""The trainer (fit, select, refit, evaluate, publish), the bundle's signatures and its plots."""
