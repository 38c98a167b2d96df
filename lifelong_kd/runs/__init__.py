"""Runs: plan them, execute each into its folder, and a comparison of many.

The shape, top to bottom::

    plan(benchmark, strategies, seeds, overrides, out_dir) -> [RunSpec]   no data, no files
    execute(spec, provider, options)  -> result.json of one run, in spec.folder
    SerialExecutor().run(specs, ...)  -> one Outcome per spec, in order
    compare(...) = plan + checks + reuse what is finished with the same identity
                   + an executor for the rest + the comparison report

Its neighbours: ``folders.py`` (the folders' locks and outputs, no torch: ``report`` and
``plot`` use it) and ``checkpoints.py`` (``checkpoint.pt`` written, read and checked); this
package re-exports their public names.

A :class:`RunSpec` is one run: its validated configuration and its folder. Its identity
(:class:`lifelong_kd.results.RunIdentity`: a readable stamp, the hash of the configuration
and, once the data is loaded, the data fingerprint) decides whether a finished run in its
folder is this run: ``compare`` reuses it then, and refuses a folder that holds another run
before anything trains. An executor is anything with :meth:`SerialExecutor.run`'s
signature: ``lifelong_kd/executors/`` has those that run specs in parallel (local
processes, Ray). Folders keep their layout, ``<out>/<strategy>/seed-<n>`` (a variant of a
grid: ``<out>/<strategy>/<key=value,...>/seed-<n>``), so committed results are found and
reused.

A run folder holds ``result.json``, ``accuracy_matrix.csv``, ``curves.csv`` (the continual
evaluation, ``train.eval_every``; written with every checkpoint), the run's plots and, while
the run is unfinished, ``checkpoint.pt`` (saved after every task). ``resume`` continues from
that checkpoint; the finished matrix is the one an uninterrupted run gives, bit for bit on
the CPU. SIGINT/SIGTERM stop a run cleanly after the current step (a second SIGINT exits at
once); a NaN loss stops it as ``diverged``. Either way result.json keeps the finished rows.

Nothing is mixed or lost:

- A run's identity is its configuration *and* its data (the fingerprint of the arrays read
  from disk): a checkpoint records both, and resuming, or reusing a finished run in
  ``compare``, on other data or with other settings is refused, naming both.
- A checkpoint is loaded with ``torch.load(weights_only=True)``: it holds tensors and plain
  data only, so unpickling it cannot run code; one of the wrong structure is refused
  (``checkpoints.py``).
- One process per folder: a run or comparison folder is locked while a command works in it,
  and a second command refuses at once. ``force`` removes the outputs this project wrote in
  the folder before and nothing else. A refused command changes nothing, and a folder that a
  failed command created (e.g. the data could not be loaded) is removed again
  (``folders.py``).
- A full disk while writing a checkpoint or result.json is one line that says the last good
  checkpoint is kept and ``--resume`` continues from it.

The package: :mod:`.signals` (a clean stop on SIGINT/SIGTERM: :class:`StopFlag`,
:func:`stop_on_signals`), :mod:`.data` (each dataset loaded once, :class:`DataProvider`; the
data a run was made on checked, :func:`check_same_data`), :mod:`.planning` (:class:`RunSpec`,
:func:`plan`, :func:`run_folder`), :mod:`.execution` (one run into its folder:
:class:`RunOptions`, :func:`execute`, :func:`run_in_held_folder` and its steps),
:mod:`.executor` (:class:`Executor`, :class:`Outcome`, :class:`SerialExecutor`),
:mod:`.comparison` (:func:`compare`, :func:`check_plan`, :func:`check_plan_data`,
:func:`reusable`) and :mod:`.suite` (:func:`compare_suite`). Here, the names the rest of the
package and its tests import, those of ``folders.py`` and ``checkpoints.py`` among them.
"""

from __future__ import annotations

from ..checkpoints import checkpoint_problem, load_checkpoint, restore_checkpoint
from ..folders import (
    CHECKPOINT,
    COMPARISON_FILES,
    COMPARISON_PLOTS,
    LOCK,
    MATRIX_KIND_SUFFIXES,
    PLOT_FORMATS,
    RUN_FILES,
    RUN_PLOTS,
    comparison_output_names,
    folder_status,
    locked,
    output_folder,
    remove_outputs,
    run_output_names,
)
from .comparison import (
    COMPARISON_FORMATS,
    CompareOutcome,
    check_plan,
    check_plan_data,
    compare,
    reusable,
)
from .data import DataProvider, check_same_data
from .execution import RunOptions, execute, run_in_held_folder
from .executor import Executor, Log, Outcome, SerialExecutor
from .planning import MAX_RUNS, RunSpec, plan, run_folder
from .signals import StopFlag, stop_on_signals
from .suite import compare_suite

__all__ = [
    # the package's modules
    "COMPARISON_FORMATS", "MAX_RUNS", "CompareOutcome", "DataProvider", "Executor", "Log",
    "Outcome", "RunOptions", "RunSpec", "SerialExecutor", "StopFlag", "check_plan",
    "check_plan_data", "check_same_data", "compare", "compare_suite", "execute", "plan",
    "reusable", "run_folder", "run_in_held_folder", "stop_on_signals",
    # re-exported: folders.py (locks and outputs) and checkpoints.py
    "CHECKPOINT", "COMPARISON_FILES", "COMPARISON_PLOTS", "LOCK", "MATRIX_KIND_SUFFIXES",
    "PLOT_FORMATS", "RUN_FILES", "RUN_PLOTS", "checkpoint_problem", "comparison_output_names",
    "folder_status", "load_checkpoint", "locked", "output_folder", "remove_outputs",
    "restore_checkpoint", "run_output_names",
]
