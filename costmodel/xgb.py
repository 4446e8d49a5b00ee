"""XGBoost: gradient-boosted trees on log latency, optionally refined by a ranking objective.

``objective="reg"`` (default): ``reg:squarederror`` on log(median_s).
``objective="rank"``: the regression booster, then ``rank_rounds`` trees of ``rank:pairwise``
grouped by workload that start from the regression's prediction (``base_margin``): they reorder
candidates within a workload, and the level starts at the regression's (it drifts as rounds add up,
hence only 30 by default).
The default is ``reg``: over 5 workload splits of the 190-workload dataset (embedded_v4, analytic
features, ``bench/costmodel_table.py --seeds 5``) the two rank alike (Spearman 0.861 vs 0.859,
top-1 0.963 vs 0.956) and ``reg`` predicts the level far better (MAPE 0.10 vs 0.25); more
``rank_rounds`` (100) ranked no better and lost the level (on embedded_v2).
Uncertainty: ``members`` extra regression boosters, each on a bootstrap sample of the rows; the
std of their predictions (log space) is the reported std.  ``predict`` of the ``reg`` objective is
the mean of the main booster and the first ``bag`` members (bagging; 0 = the main booster alone):
over 5 workload splits of embedded_v2 bagging 2 members took Spearman 0.771 -> 0.781, top-1
0.877 -> 0.888, MAPE 0.215 -> 0.212 at no extra training cost (the members are trained for the std
anyway); 4 members ranked no better (0.781 / 0.886) and cost 5 boosters per prediction instead of 3
(100k candidates: 1.24 s of predict instead of ~0.7).
``update`` adds ``update_rounds`` trees to every booster, fit on the retained rows plus the new.
Payloads are XGBoost's own UBJSON model files.  ``nthread`` defaults to 1: with a tuner timing
kernels on the other cores, two threads trained 300 trees on 3000 rows in 11.6 s, one in 4.6 s.
"""
from __future__ import annotations

import numpy as np

from tilewise.costmodel.base import register_model
from tilewise.costmodel.data import TrainingSet
from tilewise.costmodel.learned import LearnedModel


@register_model("xgb")
class XGBModel(LearnedModel):
    library = "xgboost-cpu"
    default_params = {"objective": "reg", "n_estimators": 300, "max_depth": 6, "learning_rate": 0.1,
                      "subsample": 0.9, "colsample_bytree": 0.9, "min_child_weight": 1.0,
                      "reg_lambda": 1.0, "members": 4, "rank_rounds": 30, "update_rounds": 50,
                      "nthread": 1, "seed": 0, "bag": 2}

    def __init__(self, features="analytic", **params):
        super().__init__(features, **params)
        if self.params["objective"] not in ("reg", "rank"):
            raise ValueError(f"xgb objective must be 'reg' or 'rank', not {self.params['objective']!r}")
        self._main = self._rank = None
        self._members: list = []

    def _booster_params(self, objective: str, seed: int) -> dict:
        p = self.params
        out = {"objective": objective, "max_depth": p["max_depth"], "eta": p["learning_rate"],
               "subsample": p["subsample"], "colsample_bytree": p["colsample_bytree"],
               "min_child_weight": p["min_child_weight"], "lambda": p["reg_lambda"],
               "tree_method": "hist", "seed": seed, "verbosity": 0}
        if p["nthread"]:
            out["nthread"] = p["nthread"]
        return out

    # -- training --------------------------------------------------------------------------------
    def _fit(self, data: TrainingSet) -> None:
        import xgboost as xgb
        p = self.params
        reg = self._booster_params("reg:squarederror", p["seed"])
        self._main = xgb.train(reg, xgb.DMatrix(data.X, label=data.y), p["n_estimators"])
        self._members = [xgb.train(self._booster_params("reg:squarederror", p["seed"] + 1 + i),
                                   self._bootstrap(data, i), p["n_estimators"])
                         for i in range(p["members"])]
        self._fit_rank(data)

    def _update(self, merged: TrainingSet, new: TrainingSet) -> None:
        import xgboost as xgb
        p = self.params
        if self._main is None:
            return self._fit(merged)
        reg = self._booster_params("reg:squarederror", p["seed"])
        self._main = xgb.train(reg, xgb.DMatrix(merged.X, label=merged.y), p["update_rounds"],
                               xgb_model=self._main)
        self._members = [xgb.train(self._booster_params("reg:squarederror", p["seed"] + 1 + i),
                                   self._bootstrap(merged, i), p["update_rounds"], xgb_model=m)
                         for i, m in enumerate(self._members)]
        self._fit_rank(merged)

    def _bootstrap(self, data: TrainingSet, i: int):
        import xgboost as xgb
        rng = np.random.default_rng([self.params["seed"], i])
        idx = rng.integers(0, len(data), len(data))
        return xgb.DMatrix(data.X[idx], label=data.y[idx])

    def _fit_rank(self, data: TrainingSet) -> None:
        import xgboost as xgb
        if self.params["objective"] != "rank":
            self._rank = None
            return
        order = np.argsort(data.groups, kind="stable")       # XGBoost wants rows sorted by query id
        X, g = data.X[order], data.groups[order]
        offset = self._margin(X)                              # rank on the latency, not the residual
        y = data.y[order] + offset
        margin = -(self._main.inplace_predict(X).astype(np.float64) + offset)
        d = xgb.DMatrix(X, label=-y, qid=g, base_margin=margin)
        self._rank = xgb.train(self._booster_params("rank:pairwise", self.params["seed"]), d,
                               self.params["rank_rounds"])

    # -- prediction ------------------------------------------------------------------------------
    def _predict_log(self, X: np.ndarray) -> np.ndarray:
        return self._predict_log_std(X, with_std=False)[0]

    def _predict_log_std(self, X: np.ndarray, with_std: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        pred = self._main.inplace_predict(X).astype(np.float64)
        bag = min(int(self.params.get("bag", 0)), len(self._members)) if self._rank is None else 0
        used = self._members if with_std and len(self._members) >= 2 else self._members[:bag]
        spread = np.stack([m.inplace_predict(X) for m in used]).astype(np.float64) if used else None
        if bag:
            pred = (pred + spread[:bag].sum(axis=0)) / (1 + bag)
        if self._rank is not None:
            offset = self._margin(X)
            pred = -self._rank.inplace_predict(X, base_margin=-(pred + offset)).astype(np.float64) - offset
        if not with_std:
            return pred, None
        if spread is None or len(spread) < 2:
            return pred, np.zeros_like(pred)
        return pred, spread.std(axis=0, ddof=1)

    def feature_importances(self, kind: str = "gain") -> dict[str, float]:
        """Importance of each feature in the main booster (XGBoost's ``gain`` by default),
        normalised to sum to 1, largest first."""
        score = self._main.get_score(importance_type=kind)
        by_name = {self.feature_names[int(k[1:])]: v for k, v in score.items()}
        total = sum(by_name.values()) or 1.0
        return dict(sorted(((k, v / total) for k, v in by_name.items()), key=lambda kv: -kv[1]))

    # -- files -----------------------------------------------------------------------------------
    def _payloads(self) -> dict[str, bytes]:
        out = {"main.ubj": bytes(self._main.save_raw("ubj"))}
        if self._rank is not None:
            out["rank.ubj"] = bytes(self._rank.save_raw("ubj"))
        for i, m in enumerate(self._members):
            out[f"member{i}.ubj"] = bytes(m.save_raw("ubj"))
        return out

    def _restore(self, payloads: dict[str, bytes]) -> None:
        import xgboost as xgb

        def booster(name: str):
            b = xgb.Booster()
            b.load_model(bytearray(payloads[name]))
            if self.params["nthread"]:          # not saved with the booster: predict as trained
                b.set_param({"nthread": self.params["nthread"]})
            return b
        self._main = booster("main.ubj")
        self._rank = booster("rank.ubj") if self.params["objective"] == "rank" else None
        self._members = [booster(f"member{i}.ubj") for i in range(self.params["members"])]
