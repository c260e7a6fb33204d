"""edgeprune: Shapley-value link pruning (SHAP-SAE) for autoencoders and MLPs, with a
NumPy/SciPy CSR runtime for edge boards.

The package root stays import-light (no torch, no click): a board imports only
``edgeprune.runtime``.
"""

__version__ = "0.1.0"
