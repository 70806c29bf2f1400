"""Ensembles of networks: combining members, making members cheaply, and training K of them at once.

Seed 003 lists the ways to build an ensemble: the same model from different initializations, the best
models of a hyper-parameter search, checkpoints of one run, and models trained on different data; seed
001 adds "train several independent models and average their results at test time".

- Combining: :func:`average_probs`, :func:`average_logits`, :func:`majority_vote` (ties broken by the
  summed probability). Each takes the members' logits as K tensors of shape (N, C) or one (K, N, C) tensor.
- Diversity: :func:`pairwise_disagreement`.
- Snapshot ensembles (Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free"):
  :func:`cyclic_cosine_lr`, :func:`snapshot_scheduler` and the :class:`Snapshots` callback.
- Checkpoint ensembles from one run: the :class:`Checkpoints` callback.
- Members trained on different data: bagging (Breiman 1996), :func:`bootstrap_indices`, and disjoint
  shards, :func:`shard_indices`.
- The top models of a hyper-parameter search: :func:`train_vmap` with one learning rate and weight decay
  per member trains a whole grid in one run; :func:`top_k` keeps the best on a validation score.
- Early and late fusion: :func:`penultimate_features`.
- Vectorized training of K identical small models with ``torch.func`` (:func:`train_vmap`): one
  ``vmap`` of ``grad`` of ``functional_call`` over the stacked parameters replaces K training loops.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, stack_module_state, vmap

from .release import reference
from .runtime import generator_device

# ------------------------------------------------------------------------------------------ combining


def stack_logits(logits: Sequence[Tensor] | Tensor) -> Tensor:
    """The members' logits as one (K, N, C) tensor, from K tensors of shape (N, C) or one (K, N, C)."""
    stacked = logits if isinstance(logits, Tensor) else torch.stack(list(logits))
    if stacked.dim() != 3:
        raise ValueError(f"expected logits of shape (K, N, C) or K tensors of shape (N, C), got {tuple(stacked.shape)}")
    if stacked.shape[0] == 0:
        raise ValueError("an ensemble needs at least one member")
    return stacked


@reference("08_ensembles", "average_probs")
def average_probs(logits) -> Tensor:
    """Mean of the members' softmax probabilities, ``(1/K) sum_k softmax(z_k)``: shape (N, C)."""
    return stack_logits(logits).softmax(dim=-1).mean(dim=0)


@reference("08_ensembles", "average_logits")
def average_logits(logits) -> Tensor:
    """Mean of the members' logits, ``(1/K) sum_k z_k``: shape (N, C) (take a softmax for probabilities)."""
    return stack_logits(logits).mean(dim=0)


@reference("08_ensembles", "majority_vote")
def majority_vote(logits) -> Tensor:
    """The class most members predict, shape (N,) int64.

    Each member votes for its argmax; among the classes with the most votes the one with the largest
    summed probability ``sum_k softmax(z_k)`` wins (a tie of that too goes to the lowest class index).
    """
    z = stack_logits(logits)
    votes = F.one_hot(z.argmax(dim=-1), z.shape[-1]).sum(dim=0)            # (N, C)
    summed = z.softmax(dim=-1).sum(dim=0)                                   # (N, C)
    tied = votes == votes.max(dim=-1, keepdim=True).values
    return torch.where(tied, summed, torch.full_like(summed, -math.inf)).argmax(dim=-1)


COMBINERS = {"average_probs": average_probs, "average_logits": average_logits, "majority_vote": majority_vote}


@reference("08_ensembles", "average_probs", "average_logits", "majority_vote")
def combine(logits, rule: str = "average_probs") -> Tensor:
    """Predicted labels (N,) of the ensemble under ``rule`` (a key of :data:`COMBINERS`)."""
    if rule not in COMBINERS:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(COMBINERS)}")
    out = COMBINERS[rule](logits)
    return out if out.dim() == 1 else out.argmax(dim=-1)


@reference("08_ensembles", "pairwise_disagreement")
def pairwise_disagreement(logits) -> Tensor:
    """(K, K) matrix: the fraction of samples on which members i and j predict different classes.

    Its mean off the diagonal is a simple measure of an ensemble's diversity (Kuncheva & Whitaker 2003).
    """
    pred = stack_logits(logits).argmax(dim=-1)                               # (K, N)
    return (pred[:, None, :] != pred[None, :, :]).float().mean(dim=-1)


def mean_disagreement(logits) -> float:
    """Mean of :func:`pairwise_disagreement` over the pairs i != j (0 for one member).

    Counted from the votes: on a sample where ``v_c`` members predict class ``c``, ``sum_c v_c (v_c - 1)`` of
    the ``K (K - 1)`` ordered pairs agree; the rest disagree.
    """
    z = stack_logits(logits)
    k = z.shape[0]
    if k < 2:
        return 0.0
    votes = F.one_hot(z.argmax(dim=-1), z.shape[-1]).sum(dim=0).double()   # (N, C)
    agree = (votes * (votes - 1)).sum(dim=-1)                                # agreeing ordered pairs per sample
    return float((1 - agree / (k * (k - 1))).mean())


@torch.no_grad()
def predict_logits(members: Iterable[nn.Module], x: Tensor, batch_size: int = 2048) -> Tensor:
    """(K, N, C) logits of every member on ``x``, in eval mode, batch by batch."""
    outs = []
    for model in members:
        was_training = model.training
        model.eval()
        outs.append(torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]))
        model.train(was_training)
    return torch.stack(outs)


# -------------------------------------------------------------------------- snapshots and checkpoints


@reference("08_ensembles", "cyclic_cosine_lr")
def cyclic_cosine_lr(step: int, steps_per_cycle: int, lr_max: float) -> float:
    """Huang et al. (2017), eq. 2: ``lr(t) = lr_max / 2 * (cos(pi * ((t - 1) mod M) / M) + 1)``.

    ``t = 1, 2, ...`` is the step and ``M`` the steps per cycle: each cycle starts at ``lr_max`` and
    anneals to almost 0, where a snapshot is taken; then the rate jumps back up.
    """
    if step < 1 or steps_per_cycle < 1:
        raise ValueError(f"step and steps_per_cycle must be >= 1, got {step}, {steps_per_cycle}")
    return lr_max / 2 * (math.cos(math.pi * ((step - 1) % steps_per_cycle) / steps_per_cycle) + 1)


def snapshot_scheduler(optimizer: torch.optim.Optimizer, steps_per_cycle: int):
    """torch's ``CosineAnnealingWarmRestarts`` with ``T_0 = steps_per_cycle`` (and ``eta_min = 0``): it follows
    :func:`cyclic_cosine_lr` from the optimizer's lr; step it every step (``fit(..., scheduler_interval="step")``)."""
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=int(steps_per_cycle))


def _copy_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Snapshots:
    """``fit`` callback: a copy of the weights at the end of every cycle of ``steps_per_cycle`` steps."""

    def __init__(self, steps_per_cycle: int):
        self.steps_per_cycle, self.states, self.steps = int(steps_per_cycle), [], []

    def on_step_end(self, state) -> None:
        if state.step % self.steps_per_cycle == 0:
            self.states.append(_copy_state(state.model))
            self.steps.append(state.step)


class Checkpoints:
    """``fit`` callback: a copy of the weights after every ``every``-th epoch, with that epoch's record."""

    def __init__(self, every: int = 1):
        self.every, self.states, self.records = int(every), [], []

    def on_epoch_end(self, state) -> None:
        if state.epoch % self.every == 0:
            self.states.append(_copy_state(state.model))
            self.records.append(dict(state.history.epochs[-1]))

    def best(self, k: int, key: str = "val_loss", lower: bool = True) -> list[dict]:
        """The ``k`` states with the best ``key`` (lowest if ``lower``), in the order they were saved."""
        order = sorted(range(len(self.states)), key=lambda i: self.records[i][key], reverse=not lower)[:k]
        return [self.states[i] for i in sorted(order)]


def models_from_states(factory: Callable[[], nn.Module], states: Iterable[dict]) -> list[nn.Module]:
    """One model per saved state: ``factory()`` with ``load_state_dict(state)``."""
    members = []
    for state in states:
        model = factory()
        model.load_state_dict(state)
        members.append(model)
    return members


# ---------------------------------------------------------------------------------- bagging, fusion


@reference("08_ensembles", "bootstrap_sample")
def bootstrap_indices(n: int, k: int = 1, generator: torch.Generator | None = None, device=None) -> Tensor:
    """(k, n) int64 indices drawn uniformly with replacement: k bootstrap samples of a set of n (bagging).

    Each sample holds about ``1 - 1/e`` (63.2%) of the distinct items (Breiman 1996).
    """
    gen_device = generator_device(generator)
    index = torch.randint(0, n, (k, n), generator=generator, device=gen_device)
    return index.to(device) if device is not None else index


@reference("08_ensembles", "disjoint_shards")
def shard_indices(n: int, k: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """(k, n // k) int64 indices: a random permutation of ``0..n-1`` cut into k disjoint shards of equal size
    (the ``n mod k`` left over are dropped). Members trained on different shards never see each other's data."""
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    gen_device = generator_device(generator)
    index = torch.randperm(n, generator=generator, device=gen_device)[: (n // k) * k].reshape(k, n // k)
    return index.to(device) if device is not None else index


@reference("08_ensembles", "top_k")
def top_k(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` highest ``scores``, best first (ties: the lower index first; NaN counts as lowest)."""
    key = [(-s if s == s else math.inf, i) for i, s in enumerate(scores)]
    return [i for _, i in sorted(key)[:k]]


@torch.no_grad()
def penultimate_features(model: nn.Module, x: Tensor, batch_size: int = 2048) -> Tensor:
    """The input of the model's last ``nn.Linear`` layer on ``x``: its learned features (eval mode).

    Concatenating the features of several members and training one classifier on them is *early*
    fusion; averaging their predictions is *late* fusion (seed 003, the ICCV 2015 cultural-event entry).
    """
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured = []
    hook = last.register_forward_hook(lambda mod, inputs, out: captured.append(inputs[0].flatten(1)))
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured)


# ----------------------------------------------------------------------------- vectorized training


def make_members(factory: Callable[[], nn.Module], seeds: Iterable[int]) -> list[nn.Module]:
    """``[factory() after torch.manual_seed(s) for s in seeds]``: members that differ in their init."""
    members = []
    for seed in seeds:
        torch.manual_seed(seed)
        members.append(factory())
    return members


def train_sequential(members: Sequence[nn.Module], make_loader: Callable[[], Iterable], *, epochs: int,
                     lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                     loss_fn: Callable = F.cross_entropy) -> list[nn.Module]:
    """Train each member in turn with ``torch.optim.SGD``, each on its own fresh ``make_loader()`` (the
    baseline that :func:`train_vmap` must reproduce). Trains in place and returns the members."""
    for model in members:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        loader = make_loader()
        model.train()
        for _ in range(epochs):
            for xb, yb in loader:
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(xb), yb).backward()
                optimizer.step()
    return list(members)


def _per_member(value, k: int, name: str) -> float | Tensor:
    """A hyper-parameter given once (a number) or once per member (K numbers).

    One number stays a Python float (full double precision, as ``torch.optim.SGD`` keeps it); K numbers
    become a (K,) tensor, float64 unless they come as a tensor, which keeps its dtype. Either is cast to
    each parameter's dtype only where it is used (:func:`_member_views`), so float64 members are not
    trained with rates rounded to float32.
    """
    t = value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=torch.float64)
    if t.dim() == 0:
        return float(t)
    if t.shape != (k,):
        raise ValueError(f"{name} must be a number or have one value per member ({k}), got shape {tuple(t.shape)}")
    return t


def _member_views(value: float | Tensor, params: Sequence[Tensor], scale: float = 1.0) -> float | list[Tensor]:
    """``scale · value`` for each stacked parameter: a float as it is, or a (K,) tensor as (K, 1, ..., 1)
    views in the parameter's dtype and on its device (so that they broadcast over each member's slice)."""
    if not isinstance(value, Tensor):
        return scale * value
    return [(scale * value).to(p.device, p.dtype).reshape(-1, *[1] * (p.dim() - 1)) for p in params]


def sgd_foreach_(params: list[Tensor], grads: list[Tensor], velocity: list[Tensor], *, lr, momentum: float,
                 weight_decay) -> None:
    """``torch.optim.SGD``'s step on lists of tensors with ``torch._foreach_*`` ops (a few kernels in all).

    ``g += wd·p``; ``v = μ·v + g`` (with ``μ > 0``; ``v`` starts at 0, so its first value is ``g`` as in
    SGD); ``p -= lr·v``. ``lr`` and ``weight_decay`` are floats (``torch.optim.SGD``'s own multi-tensor
    path) or lists of per-member views from :func:`_member_views`; ``grads`` is overwritten.
    """
    if isinstance(weight_decay, list):
        torch._foreach_addcmul_(grads, weight_decay, params)
    elif weight_decay:
        torch._foreach_add_(grads, params, alpha=weight_decay)
    if momentum:
        torch._foreach_mul_(velocity, momentum)
        torch._foreach_add_(velocity, grads)
        grads = velocity
    if isinstance(lr, list):
        torch._foreach_addcmul_(params, lr, grads, value=-1.0)
    else:
        torch._foreach_add_(params, grads, alpha=-lr)


def _member_step(base: nn.Module, names: Sequence[str], loss_fn: Callable, data_dim) -> Callable:
    """One SGD step of all K members, ``step(params, velocity, xb, yb, lr, momentum, weight_decay) -> losses``.

    ``vmap(grad(loss))`` over the stacked ``params`` (a list in ``names`` order, each with a leading K
    dimension), each member through ``functional_call`` of the stateless ``base``; then :func:`sgd_foreach_`
    updates ``params`` and ``velocity`` in place. Returns the K losses of the batch.
    """
    def member_loss(p, xb, yb):
        loss = loss_fn(functional_call(base, dict(zip(names, p)), (xb,)), yb)
        return loss, loss.detach()

    grads_of = vmap(grad(member_loss, has_aux=True), in_dims=(0, data_dim, data_dim))

    def step(params, velocity, xb, yb, lr, momentum, weight_decay):
        grads, loss = grads_of(params, xb, yb)
        with torch.no_grad():
            sgd_foreach_(params, list(grads), velocity, lr=lr, momentum=momentum, weight_decay=weight_decay)
        return loss
    return step


_COMPILED_STEPS: dict = {}


def _compiled_step(model: nn.Module, names: Sequence[str], loss_fn: Callable, data_dim) -> Callable:
    """:func:`_member_step` through ``torch.compile(fullgraph=True)``, kept per architecture (the model's type and
    ``repr``), loss and data layout, so that later runs with the same shapes reuse the compiled code."""
    key = (type(model), repr(model), tuple(names), loss_fn, data_dim)
    if key not in _COMPILED_STEPS:
        base = copy.deepcopy(model).to("meta")
        _COMPILED_STEPS[key] = torch.compile(_member_step(base, names, loss_fn, data_dim), fullgraph=True)
    return _COMPILED_STEPS[key]


def train_vmap(members: Sequence[nn.Module], loader: Iterable, *, epochs: int, lr,
               momentum: float = 0.0, weight_decay=0.0, loss_fn: Callable = F.cross_entropy,
               per_member_batches: bool = False, compiled: bool = False) -> tuple[list[nn.Module], Tensor]:
    """Train K identical models at once: SGD (with ``torch.optim.SGD``'s momentum) on stacked parameters.

    ``stack_module_state`` stacks the members' parameters into tensors with a leading K dimension;
    ``vmap(grad(loss))`` computes all K gradients in one call, each through ``functional_call`` of one
    stateless copy of the model. Every member sees the same batches (``per_member_batches=False``), or
    its own when the loader yields (K, B, ...) batches (bagging). ``lr`` and ``weight_decay`` are one
    number for all members or one per member (K numbers): K configurations of a hyper-parameter search
    trained in one run; they are applied in the parameters' dtype. The update is ``torch.optim.SGD``'s,
    ``g += wd·p``, ``v = μ·v + g``, ``p -= lr·v``, on all parameters at once with ``torch._foreach_*`` ops
    (:func:`sgd_foreach_`). ``compiled=True`` runs the whole step (gradients and update) through
    ``torch.compile(fullgraph=True)``, compiled on the first batch of each shape and kept for later calls
    with the same architecture: on a GPU this removes most of the host's work per step. Models with
    buffers (batch norm) are not supported. Returns new trained modules and the (steps, K) training
    losses. Each member ends where ``train_sequential`` with its own ``lr`` and ``weight_decay`` on the
    same batches ends, up to float rounding (in float64, to ~1e-15).
    """
    if any(True for _ in members[0].buffers()):
        raise ValueError("train_vmap supports models without buffers (no batch norm)")
    stacked, _ = stack_module_state(list(members))
    names = list(stacked)
    params = [stacked[k].detach().clone() for k in names]
    rates = _member_views(_per_member(lr, len(members), "lr"), params)
    decay = _per_member(weight_decay, len(members), "weight_decay")
    decay = _member_views(decay, params) if isinstance(decay, float) or bool((decay != 0).any()) else 0.0
    data_dim = 0 if per_member_batches else None
    if compiled:
        step = _compiled_step(members[0], names, loss_fn, data_dim)
    else:
        step = _member_step(copy.deepcopy(members[0]).to("meta"), names, loss_fn, data_dim)
    velocity = [torch.zeros_like(p) for p in params] if momentum else []
    losses = [step(params, velocity, xb, yb, rates, momentum, decay) for _ in range(epochs) for xb, yb in loader]
    return unstack(members, dict(zip(names, params))), torch.stack(losses) if losses else torch.empty(0, len(members))


def unstack(members: Sequence[nn.Module], params: dict) -> list[nn.Module]:
    """Copies of ``members`` loaded with the k-th slice of each stacked parameter."""
    out = []
    for k, model in enumerate(members):
        clone = copy.deepcopy(model)
        clone.load_state_dict({name: value[k] for name, value in params.items()}, strict=False)
        out.append(clone)
    return out
