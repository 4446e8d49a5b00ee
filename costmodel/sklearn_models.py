"""scikit-learn models on log latency: ``rf`` (random forest) and ``gbm`` (histogram boosting).

``rf``  ``RandomForestRegressor``; uncertainty is the spread of its trees' predictions.
``gbm`` ``HistGradientBoostingRegressor`` (squared error); uncertainty from two more of them fit
        with the quantile loss at 16 % and 84 %: std = (q84 - q16) / 2, one sigma of a normal.
``rf`` predicts with one thread whatever ``n_jobs`` trained it: a threaded forest sums its trees
in a varying order, so the same model would give answers that differ in the last bit.
``update`` refits on the retained rows plus the new ones (a few seconds at most for 10^4 rows).

Payloads are skops files, loaded with an explicit list of trusted types: the tree classes of
scikit-learn and nothing else (skops refuses to build any type not on the list, so a crafted
file cannot run code the way a pickle can).
"""
from __future__ import annotations

import numpy as np

from tilewise.costmodel.base import register_model
from tilewise.costmodel.data import TrainingSet
from tilewise.costmodel.fileformat import ModelFileError
from tilewise.costmodel.learned import LearnedModel

#: what skops reports as "untrusted" for our estimators; anything else in a file is refused
TRUSTED_TYPES = frozenset({"sklearn.tree._tree.Tree",
                           "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                           "sklearn._loss.link.IdentityLink", "sklearn._loss.loss.HalfSquaredError",
                           "sklearn._loss.loss.PinballLoss", "sklearn._loss._loss.CyHalfSquaredError",
                           "sklearn._loss._loss.CyPinballLoss"})


def dump_estimator(est) -> bytes:
    import skops.io as sio
    return sio.dumps(est)


def load_estimator(data: bytes, name: str):
    import skops.io as sio
    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception as e:
        raise ModelFileError(f"payload {name!r} is not a readable skops file ({type(e).__name__})") from None
    foreign = sorted(untrusted - TRUSTED_TYPES)
    if foreign:
        raise ModelFileError(f"payload {name!r} holds types this tilewise does not trust: {', '.join(foreign)}")
    return sio.loads(data, trusted=sorted(untrusted))


@register_model("rf")
class RandomForestModel(LearnedModel):
    library = "scikit-learn"
    default_params = {"n_estimators": 200, "max_features": 0.5, "min_samples_leaf": 1,
                      "n_jobs": 1, "seed": 0}

    def __init__(self, features="analytic", **params):
        super().__init__(features, **params)
        self._forest = None

    def _fit(self, data: TrainingSet) -> None:
        from sklearn.ensemble import RandomForestRegressor
        p = self.params
        self._forest = RandomForestRegressor(
            n_estimators=p["n_estimators"], max_features=p["max_features"],
            min_samples_leaf=p["min_samples_leaf"], n_jobs=p["n_jobs"], random_state=p["seed"])
        self._forest.fit(data.X, data.y)
        self._forest.n_jobs = 1

    def _predict_log(self, X: np.ndarray) -> np.ndarray:
        return self._forest.predict(X).astype(np.float64)

    def _predict_log_std(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_tree = np.stack([t.predict(X) for t in self._forest.estimators_]).astype(np.float64)
        return self._predict_log(X), per_tree.std(axis=0)

    def feature_importances(self) -> dict[str, float]:
        imp = self._forest.feature_importances_
        return dict(sorted(zip(self.feature_names, map(float, imp)), key=lambda kv: -kv[1]))

    def _payloads(self) -> dict[str, bytes]:
        return {"forest.skops": dump_estimator(self._forest)}

    def _restore(self, payloads: dict[str, bytes]) -> None:
        self._forest = load_estimator(payloads["forest.skops"], "forest.skops")


@register_model("gbm")
class HistGradientBoostingModel(LearnedModel):
    library = "scikit-learn"
    #: ``threads``: OpenMP threads while fitting and predicting; 1 because with kernels being
    #: timed on the other core two threads took 25 s instead of 2 s for 300 iterations on 2000 rows
    default_params = {"max_iter": 300, "learning_rate": 0.1, "max_leaf_nodes": 31,
                      "min_samples_leaf": 10, "l2_regularization": 0.0, "quantiles": True, "threads": 1,
                      "seed": 0}

    def __init__(self, features="analytic", **params):
        super().__init__(features, **params)
        self._main = None
        self._q = ()

    def _make(self, **loss):
        from sklearn.ensemble import HistGradientBoostingRegressor
        p = self.params
        return HistGradientBoostingRegressor(
            max_iter=p["max_iter"], learning_rate=p["learning_rate"], max_leaf_nodes=p["max_leaf_nodes"],
            min_samples_leaf=p["min_samples_leaf"], l2_regularization=p["l2_regularization"],
            early_stopping=False, random_state=p["seed"], **loss)

    def _threads(self):
        from threadpoolctl import threadpool_limits
        return threadpool_limits(self.params["threads"] or None, user_api="openmp")

    def _fit(self, data: TrainingSet) -> None:
        with self._threads():
            self._main = self._make().fit(data.X, data.y)
            self._q = ()
            if self.params["quantiles"]:
                self._q = tuple(self._make(loss="quantile", quantile=q).fit(data.X, data.y) for q in (0.16, 0.84))

    def _predict_log(self, X: np.ndarray) -> np.ndarray:
        with self._threads():
            return self._main.predict(X).astype(np.float64)

    def _predict_log_std(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = self._predict_log(X)
        if not self._q:
            return mean, np.zeros_like(mean)
        with self._threads():
            lo, hi = (m.predict(X).astype(np.float64) for m in self._q)
        return mean, np.maximum(hi - lo, 0.0) / 2.0

    def _payloads(self) -> dict[str, bytes]:
        out = {"main.skops": dump_estimator(self._main)}
        for name, m in zip(("q16.skops", "q84.skops"), self._q):
            out[name] = dump_estimator(m)
        return out

    def _restore(self, payloads: dict[str, bytes]) -> None:
        self._main = load_estimator(payloads["main.skops"], "main.skops")
        if self.params["quantiles"]:
            self._q = tuple(load_estimator(payloads[n], n) for n in ("q16.skops", "q84.skops"))
