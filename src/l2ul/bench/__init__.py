"""Benchmarks: the method x k x seed grid on one original model (:func:`run_bench`) and successive deletion
requests on one model (:func:`run_continual`); both resumable. The ``l2ul bench`` command is in :mod:`l2ul.cli.bench`.

What is measured, and on what
    D_f: ``k`` training instances per request, ``random_forget_ids(k, n_train, seed)``, un-augmented
    (``bundle.stack_train``). D_test: the whole test set. D_r: a *fixed random subset* (``retain_eval_size``
    instances, drawn with ``numpy.random.default_rng(12345)``, independent of the grid seeds) of the training
    data outside *every* forget set of the run, so each cell is measured on the same D_r instances and none
    of them is ever forgotten. The oracle (and any method that needs remaining data) fine-tunes on the
    training data outside that D_r subset and outside every forget set (optionally a random subset of
    ``oracle_pool_size``), so it is never evaluated on its own training batches. The outputs state this.

Shared ingredients
    For each (k, seed) the bench prepares every ingredient a pending method declares (the adversarial set,
    MAS importance) once on the original model, exactly as the engine would
    (:func:`l2ul.engine.prepare_ingredients`, seeded with the cell's seed), and passes them as
    ``ingredients=`` to every method. ``adv`` and ``l2ul`` therefore train on identical adversarial examples,
    take the same code path in the engine (so a method's result does not depend on which other methods are in
    the grid or on a resume), and both report the *generation time of that one set* as ``time_adversarial``
    (the same number).

Seeds
    The grid seed of a cell seeds its forget set, the engine (``config.seed`` is replaced by it: target
    labels, PGD starts, batch order) and the MIA attack's subsampling.

Files (all written atomically; ``results.jsonl`` is appended line by line with fsync)
    ``settings.json`` (what the numbers depend on and its hash), ``results.jsonl`` (one record per finished
    cell), ``cells/<method>_k<k>_s<seed>.json`` (per-instance outcome, forget ids, engine summary),
    ``results.csv``, ``results.json`` (settings + records), ``table.md`` (header + paper table),
    ``plot_vs_k.png``, ``plot_phase_times.png``. Continual mode: ``continual.jsonl``, ``continual.json``,
    ``continual.md``, ``plot_continual.png``.

Modules
    :mod:`~l2ul.bench.grid` (:func:`run_bench`), :mod:`~l2ul.bench.continual` (:func:`run_continual`),
    :mod:`~l2ul.bench.splits` (forget sets, the D_r subset and oracle pool, their loaders),
    :mod:`~l2ul.bench.store` (settings and their hash, records, resuming a folder, checkpoints),
    :mod:`~l2ul.bench.render` (headers, tables, plots, :func:`render_results`),
    :mod:`~l2ul.bench.machine` (where and when it was measured), :mod:`~l2ul.bench.common` (shared checks).
"""
from .common import DEFAULT_KS, DEFAULT_METHODS, resolve_methods
from .continual import run_continual
from .grid import run_bench
from .machine import machine_info
from .render import render_results
from .splits import RETAIN_EVAL_SEED, continual_forget_sets, eval_splits
from .store import model_fingerprint, settings_hash

__all__ = [
    "run_bench",
    "run_continual",
    "render_results",
    "eval_splits",
    "continual_forget_sets",
    "settings_hash",
    "model_fingerprint",
    "machine_info",
    "resolve_methods",
    "DEFAULT_METHODS",
    "DEFAULT_KS",
    "RETAIN_EVAL_SEED",
]

