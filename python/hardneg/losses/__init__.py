"""Contrastive losses for in-batch and mined hard negatives (PyTorch).

Every loss is a ``torch.nn.Module`` with a functional twin, works on whatever device its inputs are
on, computes similarities and log-sum-exps in float32 (bf16/fp16 inputs are upcast) and in log
space, and raises :class:`hardneg.HardnegError` subclasses on bad input.

* :class:`InfoNCE` / :func:`info_nce`: sentence-transformers ``MultipleNegativesRankingLoss`` with
  mined negatives, duplicate-id masks, false-negative margin, hardness weighting, symmetric and
  cross-process (``gather=True``) variants.
* :class:`ChunkedInfoNCE` / :func:`chunked_info_nce`: the same loss and gradients with memory linear
  in the batch.
* :class:`GuidedInfoNCE` / :func:`guided_info_nce`: GISTEmbed (guide-model false-negative masking).
* :class:`DecoupledInfoNCE`, :class:`DebiasedInfoNCE`, :class:`HardNegativeInfoNCE`: DCL, Chuang et
  al.'s debiased loss and Robinson et al.'s HCL on the InfoNCE candidates.
* :class:`SigLIPLoss` / :func:`siglip_loss`: pairwise sigmoid loss with learnable temperature and bias.
* :func:`mix_hard_negatives`: MoCHi synthetic hard negatives.
* :class:`CachedEncoder`: GradCache, to train an encoder with a batch larger than memory.
* :func:`gather_with_grad`: all-gather with exact gradients.

**Padding and ids**, one convention with :class:`hardneg.Mined` (whose missing negatives are
``-1``): pass mined corpus ids as ``negative_ids`` and a ``-1`` marks a padding slot: it is masked
out of every row's candidates and its embedding is ignored (a NaN or zero placeholder is fine).
``positive_ids`` of ``-1`` mean "no id" (that positive matches no candidate). A row left with
nothing to contrast adds 0 to the loss and raises a ``RuntimeWarning`` with the count; a NaN or
Inf in an embedding that is used raises :class:`hardneg.NonFiniteError` naming the tensor and row.
``similarity`` takes the names mining's ``metric`` uses, ``"cosine"`` and ``"dot"`` (``"ip"`` is
accepted); a ``temperature`` above 1 with cosine similarity warns (sentence-transformers' ``scale``
is ``1 / temperature``).

This subpackage needs ``torch`` (``pip install hardneg[torch]``); ``import hardneg`` does not.
"""

from __future__ import annotations

from .._optional import require

require("torch", "hardneg.losses")

from .cached import CachedEncoder  # noqa: E402 - after the check that torch is there
from .chunked import ChunkedInfoNCE, chunked_info_nce, chunked_lse_sum
from .debiased import (
    DebiasedInfoNCE,
    DecoupledInfoNCE,
    HardNegativeInfoNCE,
    debiased_info_nce,
    decoupled_info_nce,
    hard_negative_info_nce,
)
from .distributed import gather_no_grad, gather_with_grad, rank_and_world_size
from .guided import GuidedInfoNCE, guided_info_nce
from .infonce import InfoNCE, info_nce
from .mixing import mix_hard_negatives
from .siglip import SigLIPLoss, siglip_loss

__all__ = [
    "InfoNCE",
    "info_nce",
    "ChunkedInfoNCE",
    "chunked_info_nce",
    "chunked_lse_sum",
    "GuidedInfoNCE",
    "guided_info_nce",
    "DecoupledInfoNCE",
    "decoupled_info_nce",
    "DebiasedInfoNCE",
    "debiased_info_nce",
    "HardNegativeInfoNCE",
    "hard_negative_info_nce",
    "SigLIPLoss",
    "siglip_loss",
    "mix_hard_negatives",
    "CachedEncoder",
    "gather_with_grad",
    "gather_no_grad",
    "rank_and_world_size",
]
