"""Small array helpers the stages share."""

import numpy as np


def unit_rows(X, dtype=np.float64) -> np.ndarray:
    """The rows of X scaled to unit L2 norm, as `dtype`; all-zero rows stay zero."""
    X = np.asarray(X, dtype=dtype)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
