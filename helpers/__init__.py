"""Helpers for the "Synthetic Gradients, Hands-On" notebooks.

Each notebook first builds an idea in the open; later notebooks import the same thing from here.
Modules: `config` (run sizes, device, seed), `data`, `models`, `training`, `results`, `plots`.
"""
__version__ = "0.1.0"
