"""vpstudy: a reproducible, interactive study of video prediction (SimVP and a lightweight CrevNet-style model).

    from vpstudy import load_trained, predict
    model, cfg = load_trained("gsta")                 # the shipped weights (vpstudy.weights)
    future = predict(model, cfg, observed)            # (T_in, C, H, W) -> (T_out, C, H, W) (vpstudy.predict)
"""

from vpstudy._version import __version__

__all__ = ["__version__", "load_trained", "predict"]


def __getattr__(name: str):
    """``load_trained`` and ``predict`` on first use, so that ``import vpstudy`` stays light."""
    if name == "load_trained":
        from vpstudy.weights import load_trained

        return load_trained
    if name == "predict":
        from vpstudy.predict import predict

        return predict
    raise AttributeError(f"module 'vpstudy' has no attribute {name!r}")
