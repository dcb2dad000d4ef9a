"""The interface every unlearning method implements, and what the engine hands it.

A method **owns its ingredients**: it declares what it needs beyond the forget set (``ingredients``: things
prepared from the original model, e.g. adversarial examples or MAS importance, see
:mod:`l2ul.methods.ingredients`; ``data``: data the caller must supply, e.g. ``"retain"``), prepares anything
else in :meth:`UnlearningMethod.setup`, and builds each step's loss. It says which phases it runs
(:meth:`UnlearningMethod.phases`): by default one ``forget`` phase that stops as soon as the task holds; a
method may add a ``repair`` phase. The engine (:mod:`l2ul.engine`) owns everything else: validating and
copying, preparing the declared ingredients (timed), the optimisation loop, the stopping check, divergence
detection and timing. A new method is one file with a subclass decorated with
:func:`l2ul.methods.register_method`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import UnlearnConfig


@dataclass
class StepBatch:
    """One optimisation step's data.

    ``x_forget``/``y_forget``: forget instances and the label the forget term works on (their own label for
    ``misclassify``, pushed away from; their target for ``relabel``, pulled toward).
    ``x_aux``/``y_aux``: the auxiliary batch kept fitted (adversarial examples with their adversarial labels,
    or remaining training data with its labels); ``None`` for methods without one.
    """

    x_forget: torch.Tensor
    y_forget: torch.Tensor
    x_aux: Optional[torch.Tensor] = None
    y_aux: Optional[torch.Tensor] = None


@dataclass
class MethodContext:
    """Everything one run's method sees. The engine fills it in; a method reads it and may store what it
    prepares in ``extras``.

    ``task``, ``config``: the request's task and the run's config. ``model``: the working copy being
    unlearned. ``x_forget``/``y_forget``: the forget set and its labels; ``targets``: relabel targets;
    ``bands``: task ``unseen``, each instance's band of soft margins ``[k, 2]`` (:mod:`l2ul.unseen`).
    ``ingredients``: prepared ingredients by name (see :mod:`l2ul.methods.ingredients`). ``data``: the data
    the caller supplied by name (only names the method declared). ``generator``: the run's seeded generator
    (batch order, random targets). ``logits_before``: the original model's logits on the forget set.
    """

    task: str
    config: UnlearnConfig
    model: Optional[nn.Module] = None
    x_forget: Optional[torch.Tensor] = None
    y_forget: Optional[torch.Tensor] = None
    targets: Optional[torch.Tensor] = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    generator: Optional[torch.Generator] = None
    num_classes: int = 0
    logits_before: Optional[torch.Tensor] = None
    ingredients: Dict[str, Any] = field(default_factory=dict)
    data: Dict[str, Any] = field(default_factory=dict)
    extras: Dict[str, Any] = field(default_factory=dict)
    progress: bool = False
    bands: Optional[torch.Tensor] = None

    @property
    def term_labels(self) -> torch.Tensor:
        """What the forget term works on: the targets for ``relabel``, the labels for ``misclassify``."""
        return self.targets if self.task == "relabel" else self.y_forget

    # the names of 0.2, kept for code that read them
    @property
    def importance(self) -> Optional[Dict[str, torch.Tensor]]:
        return self.ingredients.get("importance")

    @property
    def anchor(self) -> Optional[Dict[str, torch.Tensor]]:
        return self.extras.get("anchor")


@dataclass
class Phase:
    """One optimisation phase the engine runs.

    ``name``: its key in ``UnlearnResult.timings`` and ``.phases``. ``kind``: ``"forget"`` stops as soon as
    the task holds (``converged``) or when ``max_steps`` is spent (``budget_exhausted``); ``"repair"`` runs
    only after a converged forget phase, stops when ``should_stop(step, ctx)`` says so or at ``max_steps``,
    and never ends in a state where the task does not hold (the engine checks the task after every step and
    rolls back to the last step where it held). ``make_optimizer(params)``: the phase's optimiser.
    ``loss(model, ctx)``: one step's loss (the phase draws its own batch). ``bn``: ``"train"`` or
    ``"freeze"``, the batch-norm mode during its steps. ``make_scheduler(optimizer)``: an optional
    learning-rate scheduler, stepped after every optimiser step. ``on_start(ctx)``: called once as the phase
    starts (e.g. to re-read a target from the model as the earlier phases left it, or to edit the model in
    closed form; a string it returns begins the phase's message). ``check_first``: a forget phase checks
    the task once before its first step and ends with 0 steps if it already holds.
    """

    name: str
    kind: str
    max_steps: int
    make_optimizer: Callable[[List[nn.Parameter]], torch.optim.Optimizer]
    loss: Callable[[nn.Module, MethodContext], torch.Tensor]
    bn: str = "train"
    should_stop: Optional[Callable[[int, MethodContext], bool]] = None
    make_scheduler: Optional[Callable[[torch.optim.Optimizer], Any]] = None
    on_start: Optional[Callable[["MethodContext"], Optional[str]]] = None
    #: a forget phase that checks the task before its first step: 0 steps when ``on_start`` already reached it
    check_first: bool = False


def cycle_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``, reshuffled every pass, forever."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for s in range(0, n, batch_size):
            yield perm[s:s + batch_size]


def bn_forward(bn_mode: str):
    """Forward of the forget and auxiliary batches. Frozen BN: one pass over the concatenation (identical
    to two passes in eval mode, and faster). Train-mode BN: two separate passes, as the original code does,
    so each batch is normalised with its own statistics, and in the original's order: auxiliary batch
    first, forget batch last. The order matters because each pass also updates the running statistics the
    evaluated model uses; on the parity forget set the forget-first order cost adv 1.7 and l2ul 2.0 points
    of D_r (BENCHMARKS.md, section 1)."""

    def forward(model, xf, xa):
        if xa is None:
            return model(xf), None
        if bn_mode == "freeze":
            out = model(torch.cat([xf, xa]))
            return out[: xf.shape[0]], out[xf.shape[0]:]
        logits_a = model(xa)
        return model(xf), logits_a

    return forward


def sgd(config: UnlearnConfig) -> Callable[[List[nn.Parameter]], torch.optim.Optimizer]:
    """The paper's optimiser: SGD with the config's lr, momentum and weight decay (fresh per request)."""
    return lambda params: torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                          weight_decay=config.weight_decay)


def fixed_target_phase(ctx: MethodContext, targets: torch.Tensor, *, bn: str) -> Phase:
    """A forget phase descending cross-entropy toward a fixed target per forget instance (shuffled forget
    batches, the config's SGD and step budget): the forget term of ``repair``, ``random_labels`` and
    ``boundary_shrink``, which differ only in how they choose the targets."""
    cfg = ctx.config
    batches = cycle_batches(ctx.x_forget.shape[0], cfg.forget_batch_size, ctx.generator)

    def loss(model: nn.Module, c: MethodContext) -> torch.Tensor:
        idx = next(batches).to(c.device)
        return F.cross_entropy(model(c.x_forget[idx]), targets[idx])

    return Phase("optimization", "forget", cfg.max_steps, sgd(cfg), loss, bn=bn)


class UnlearningMethod:
    """Base class: gradient ascent on the forget set, one forget phase.

    Subclasses declare ``ingredients`` and ``data`` and override :meth:`aux_batches`, :meth:`loss`,
    :meth:`setup` or :meth:`phases` as needed.
    """

    name: str = "base"
    description: str = ""
    #: things prepared from the original model and the forget set, by name (l2ul.methods.ingredients)
    ingredients: Tuple[str, ...] = ()
    #: data the caller must supply, by name ("retain": remaining training data); any other is refused
    data: Tuple[str, ...] = ()
    #: data the method uses when the caller supplies it (e.g. "proxy": unlabeled images)
    optional_data: Tuple[str, ...] = ()
    #: method-specific config groups it reads (of l2ul.config.METHOD_GROUPS, e.g. "repair"); results stores
    #: hash the fields of such a group only for methods that read it
    config_groups: Tuple[str, ...] = ()
    #: what the method needs beyond the model and the forget set, in words, for `l2ul info` and the README
    data_needs: str = "none"
    #: where the method comes from
    source: str = ""
    #: the tasks it can do (l2ul.config.TASKS); "unseen" needs a loss-band forget term (see methods.repair)
    tasks: Tuple[str, ...] = ("misclassify", "relabel")

    def check_request(self, task: str, config) -> None:
        """Refuse (with :class:`~l2ul.errors.ConfigError`) a setting this method cannot honour for ``task``;
        the engine calls it before any work. Nothing to refuse by default."""

    def setup(self, ctx: MethodContext) -> None:
        """Called once after the ingredients are prepared, before the first phase."""

    def aux_batches(self, ctx: MethodContext) -> Iterator[Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]]:
        """The auxiliary batch of every step; none by default."""
        while True:
            yield None, None

    def phases(self, ctx: MethodContext) -> List[Phase]:
        """The optimisation phases. Default: one ``forget`` phase named ``optimization`` with the paper's
        SGD, ``max_steps`` steps, the config's batch-norm mode and :meth:`loss` on shuffled forget batches
        and :meth:`aux_batches`."""
        cfg = ctx.config
        forget_batches = cycle_batches(ctx.x_forget.shape[0], cfg.forget_batch_size, ctx.generator)
        aux = self.aux_batches(ctx)
        forward = bn_forward(cfg.bn)
        labels = ctx.term_labels

        def step_loss(model: nn.Module, c: MethodContext) -> torch.Tensor:
            idx = next(forget_batches).to(c.device)
            xa, ya = next(aux)
            return self.loss(model, StepBatch(c.x_forget[idx], labels[idx], xa, ya), c, forward)

        return [Phase("optimization", "forget", cfg.max_steps, sgd(cfg), step_loss, bn=cfg.bn)]

    def forget_term(self, logits_f: torch.Tensor, batch: StepBatch, ctx: MethodContext) -> torch.Tensor:
        """The forget batch's term. ``relabel``: cross-entropy toward the targets, descended.
        ``misclassify``: with ``forget_loss="ascent"`` (the paper) the label's cross-entropy, ascended; with
        ``"nearest"`` the cross-entropy toward each instance's highest-scoring other class, descended."""
        if ctx.task == "relabel":
            return F.cross_entropy(logits_f, batch.y_forget)
        if ctx.config.forget_loss == "nearest":
            others = logits_f.detach().clone()
            others.scatter_(1, batch.y_forget[:, None], float("-inf"))
            return F.cross_entropy(logits_f, others.argmax(1))
        return -F.cross_entropy(logits_f, batch.y_forget)

    def loss(self, model: nn.Module, batch: StepBatch, ctx: MethodContext, forward) -> torch.Tensor:
        """The step's loss. ``forward(model, x_forget, x_aux)`` returns ``(logits_forget, logits_aux)``
        honouring the run's batch-norm mode.

        With an auxiliary batch, the two terms are weighted by their share of the combined batch, as in the
        authors' code: ``B_f/(B_f+B_a) * forget_term + B_a/(B_f+B_a) * CE(aux)``.
        """
        logits_f, logits_a = forward(model, batch.x_forget, batch.x_aux)
        forget = self.forget_term(logits_f, batch, ctx)
        if logits_a is None:
            return forget
        bf, ba = batch.x_forget.shape[0], batch.x_aux.shape[0]
        return (bf * forget + ba * F.cross_entropy(logits_a, batch.y_aux)) / (bf + ba)
