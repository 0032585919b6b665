"""A picture through the network: the report that `mlknobs predict` prints and a web page would show."""

from __future__ import annotations

import numpy as np

from mlknobs.nn.model import Model


def classify(model: Model, pixels: np.ndarray, top_k: int = 3) -> dict:
    """What the model makes of one 28x28 input (uint8, 784 values).

    Returns label, name, confidence, probabilities (all classes) and top_k (the k most likely,
    each with label, name and probability), plain Python values ready for JSON.
    """
    probabilities = model.predict_proba(pixels.reshape(1, -1))[0].astype(np.float64)    # (10,)
    ranked = [int(k) for k in np.argsort(-probabilities, kind="stable")[:top_k]]
    best, names = ranked[0], model.class_names
    return {"label": best, "name": names[best], "confidence": float(probabilities[best]),
            "probabilities": [float(p) for p in probabilities],
            "top_k": [{"label": k, "name": names[k], "probability": float(probabilities[k])} for k in ranked]}
