"""A small torch MLP ensemble on log latency.

Inputs are ``sign(x) * log1p(|x|)`` of the features (flop and byte counts span decades), then
standardised with the training rows' mean and std; the target is standardised log(median_s).
``members`` networks (``hidden`` layer widths, ReLU) differ in their initialisation and batch
order (a deep ensemble): ``predict`` is their mean, the uncertainty their std (log space).
``update`` fine-tunes every member for ``update_epochs`` on the retained rows plus the new ones,
keeping the input scaling of the first fit.  Weights and scalers are one safetensors payload.
"""
from __future__ import annotations

import numpy as np

from tilewise.costmodel.base import register_model
from tilewise.costmodel.data import TrainingSet
from tilewise.costmodel.fileformat import ModelFileError
from tilewise.costmodel.learned import LearnedModel

_WEIGHTS = "weights.safetensors"


def _signed_log(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return np.sign(X) * np.log1p(np.abs(X))


@register_model("mlp")
class MLPModel(LearnedModel):
    library = "torch"
    #: ``threads``: torch intra-op threads; 1 because on a machine that also times kernels a
    #: second thread made a training step 10-20x slower (spinning on a busy core)
    default_params = {"hidden": [64, 32], "members": 4, "epochs": 300, "batch_size": 256,
                      "learning_rate": 2e-3, "weight_decay": 1e-4, "update_epochs": 30,
                      "threads": 1, "seed": 0}

    def __init__(self, features="analytic", **params):
        super().__init__(features, **params)
        self.params["hidden"] = [int(h) for h in self.params["hidden"]]
        self._nets: list = []
        self._scale: dict[str, np.ndarray] = {}

    def _net(self):
        import torch
        layers, width = [], len(self.feature_names)
        for h in self.params["hidden"]:
            layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
            width = h
        layers.append(torch.nn.Linear(width, 1))
        return torch.nn.Sequential(*layers)

    def _inputs(self, X: np.ndarray):
        import torch
        s = self._scale
        return torch.from_numpy(((_signed_log(X) - s["x_mean"]) / s["x_std"]).astype(np.float32))

    # -- training --------------------------------------------------------------------------------
    def _fit(self, data: TrainingSet) -> None:
        import torch
        Z = _signed_log(data.X)
        std = Z.std(axis=0)
        self._scale = {"x_mean": Z.mean(axis=0), "x_std": np.where(std > 1e-9, std, 1.0),
                       "y_mean": np.array([data.y.mean()]), "y_std": np.array([max(data.y.std(), 1e-9)])}
        self._nets = []
        for i in range(self.params["members"]):
            torch.manual_seed(self.params["seed"] * 1000 + i)
            net = self._net()
            self._train(net, data, self.params["epochs"], seed=i)
            self._nets.append(net)

    def _update(self, merged: TrainingSet, new: TrainingSet) -> None:
        if not self._nets:
            return self._fit(merged)
        for i, net in enumerate(self._nets):
            self._train(net, merged, self.params["update_epochs"], seed=1000 + i)

    def _train(self, net, data: TrainingSet, epochs: int, seed: int) -> None:
        import torch
        p = self.params
        with _torch_threads(p["threads"]):
            x = self._inputs(data.X)
            y = torch.from_numpy(((data.y - self._scale["y_mean"]) / self._scale["y_std"]).astype(np.float32))
            opt = torch.optim.AdamW(net.parameters(), lr=p["learning_rate"], weight_decay=p["weight_decay"])
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
            gen = torch.Generator().manual_seed(p["seed"] * 1000 + seed)
            net.train()
            for _ in range(epochs):
                for idx in torch.randperm(len(y), generator=gen).split(p["batch_size"]):
                    opt.zero_grad()
                    loss = torch.nn.functional.mse_loss(net(x[idx]).squeeze(1), y[idx])
                    loss.backward()
                    opt.step()
                sched.step()
            net.eval()

    # -- prediction ------------------------------------------------------------------------------
    def _member_predictions(self, X: np.ndarray) -> np.ndarray:
        import torch
        with torch.no_grad(), _torch_threads(self.params["threads"]):
            x = self._inputs(X)
            out = np.stack([net(x).squeeze(1).numpy() for net in self._nets]).astype(np.float64)
        return out * self._scale["y_std"][0] + self._scale["y_mean"][0]

    def _predict_log(self, X: np.ndarray) -> np.ndarray:
        return self._member_predictions(X).mean(axis=0)

    def _predict_log_std(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        P = self._member_predictions(X)
        return P.mean(axis=0), (P.std(axis=0, ddof=1) if len(P) > 1 else np.zeros(P.shape[1]))

    # -- files -----------------------------------------------------------------------------------
    def _payloads(self) -> dict[str, bytes]:
        import torch
        from safetensors.torch import save
        tensors = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in self._scale.items()}
        for i, net in enumerate(self._nets):
            for k, v in net.state_dict().items():
                tensors[f"member{i}.{k}"] = v.detach().clone().contiguous()
        return {_WEIGHTS: save(tensors)}

    def _restore(self, payloads: dict[str, bytes]) -> None:
        from safetensors.torch import load
        try:
            tensors = load(payloads[_WEIGHTS])
        except Exception as e:
            raise ModelFileError(f"{_WEIGHTS}: safetensors payload is damaged ({str(e).splitlines()[0]})") from None
        self._scale = {k: tensors[k].numpy() for k in ("x_mean", "x_std", "y_mean", "y_std")}
        self._nets = []
        for i in range(self.params["members"]):
            net = self._net()
            prefix = f"member{i}."
            net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            net.eval()
            self._nets.append(net)


class _torch_threads:
    """Run a block with torch's intra-op pool at ``n`` threads, then restore it."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import torch
        self.saved = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch
        torch.set_num_threads(self.saved)
