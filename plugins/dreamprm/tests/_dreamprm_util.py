"""Shared helpers of the DreamPRM tests (not a test module)."""

from __future__ import annotations

import copy
import functools

import torch
from rewardkit_dreamprm import DreamPRMConfig, DreamPRMTrainer, GenerativePRM, ValueHeadPRM, make_toy

from rewardkit.testing import tiny_model_dir


@functools.lru_cache(maxsize=1)
def _base():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_model_dir("causal_lm")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def v1_prm(seed: int = 0) -> ValueHeadPRM:
    """A fresh v1 PRM on the tiny LM (the LM is loaded once per session and copied)."""
    lm, tok = _base()
    torch.manual_seed(seed)
    return ValueHeadPRM(copy.deepcopy(lm), copy.deepcopy(tok))


def gen_prm() -> GenerativePRM:
    lm, tok = _base()
    return GenerativePRM(copy.deepcopy(lm), copy.deepcopy(tok))


def small_toy(**kw):
    args = dict(n_train_per_domain=24, n_meta=16, n_eval=8, n_candidates=4)
    args.update(kw)
    return make_toy(**args)


def trainer(prm, toy, **cfg) -> DreamPRMTrainer:
    base = dict(lr=1e-3, meta_lr=0.05, batch_size=8, meta_batch_size=8, unroll_steps=2, lr_scheduler="constant",
                logging_steps=1)
    base.update(cfg)
    config = DreamPRMConfig.v15(**base) if prm.variant == "1.5" else DreamPRMConfig(**base)
    return DreamPRMTrainer(prm, toy["train"], toy["meta"], config)
