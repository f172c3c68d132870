"""Sparse autoencoders on word vectors, one module per architecture (`arch` in the plan's `sae` block):
topk.py (Gao et al. 2024), relu_l1.py (Anthropic 2023/2024), batch_topk.py (Bussmann et al. 2024).

The public API: `fit(X, cfg) -> SAE`, `encode_numpy`, `fvu`, and the round trip through the store,
`sae.to_arrays()` -> `from_arrays(arrays, config)` / `from_run(run)`. Adding an architecture = one module
with an SAE subclass, its config class in compute/config.py, and its entry in ARCHS below."""

from __future__ import annotations

from compute.config import SAE_ARCHS, SAE_CONFIGS, sae_config
from compute.sae import train
from compute.sae.base import HISTORY_COLUMNS, SAE, encode_numpy, fvu
from compute.sae.batch_topk import BatchTopKSAE
from compute.sae.relu_l1 import ReluL1SAE
from compute.sae.topk import TopKSAE
from compute.sae.train import default_steps
from store.schema import SAE as SAE_PATHS
from store.schema import SAEGroup

ARCHS: dict[str, type[SAE]] = {cls.arch: cls for cls in (TopKSAE, ReluL1SAE, BatchTopKSAE)}

__all__ = [
    "ARCHS",
    "HISTORY_COLUMNS",
    "SAE",
    "default_steps",
    "encode_numpy",
    "fit",
    "from_arrays",
    "from_run",
    "fvu",
    "stored_config",
]


def fit(X, cfg, device: str = "cpu", progress=None, freeze_decoder: bool = False) -> SAE:
    """Train the SAE of `cfg.arch` on the rows of X (n, d); see compute/sae/train.py (freeze_decoder: the
    frozen-random-decoder baseline)."""
    return train.fit(ARCHS[cfg.arch], X, cfg, device=device, progress=progress, freeze_decoder=freeze_decoder)


def stored_config(config: dict):
    """The typed config of a stored `/sae` config attribute (its `d_in` and the settings the architecture no
    longer has, as in runs stored by older versions, are ignored)."""
    fields = dict(zip(SAE_ARCHS, SAE_CONFIGS)).get(config.get("arch", "topk"), SAE_CONFIGS[0]).model_fields
    return sae_config({k: v for k, v in config.items() if k in fields})


def from_arrays(arrays, config: dict, history=None) -> SAE:
    """The SAE that `sae.to_arrays()` and `sae.config` describe."""
    cfg = stored_config(config)
    return ARCHS[cfg.arch].from_arrays(arrays, cfg, history)


def from_run(run, group: SAEGroup = SAE_PATHS) -> SAE:
    """The SAE a run stores (a store.reader.Run; written through compute/features.py's sae_output)."""
    cfg = stored_config(run.attrs_of(group.path)["config"])
    cls = ARCHS[cfg.arch]
    return cls.from_arrays({name: run.array(getattr(group, name)) for name in cls.ARRAYS}, cfg)
