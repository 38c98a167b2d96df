"""Strategy presets: the names users type, each a strategy class plus fixed option values,
with what it is and where it comes from.

Presets are what users name on the command line (``--strategy lwf-facil``) and what
``lifelong-kd list`` prints with their source; every option can still be changed with
``--set strategy.KEY=VALUE``. Adding a strategy touches its own file (the class) and this one
(its presets), or calls :func:`register` from its own file. External families of strategies
(``avalanche:<Name>``, ``interop/avalanche.py``) register a resolver for their prefix
(:func:`register_family`); their module is loaded by name on first use, as a plugin.

The LwF presets, option by option (T = ``temperature``, "old" = only the outputs of earlier
tasks, "padded" = the student's softmax over old and current outputs against the teacher's
over the old ones, zero on the current):

============== ======= == ==== ======= ====== ===== ========= ======= ======= ======
preset         loss    T  T^2  logits  reduce alpha schedule  teacher ce      warm-up
============== ======= == ==== ======= ====== ===== ========= ======= ======= ======
lwf            soft_ce 2  no   old     sum    1     constant  same    seen    1
lwf-vdv2019    soft_ce 2  yes  padded  mean   1     vdv2019   same    seen    0
lwf-vdv2022    soft_ce 2  no   padded  mean   1     vdv2022   same    seen    0
lwf-mammoth    soft_ce 2  no   old     sum    0.5   constant  clean   seen    1
lwf-avalanche  kl      2  no   old     sum    1     constant  same    seen    0
lwf-facil      soft_ce 2  no   old     sum    1     constant  same    current 0
============== ======= == ==== ======= ====== ===== ========= ======= ======= ======

``lwf-facil-exemplars`` is ``lwf-facil`` with a random per-class memory of 2000 joined to each
task's data and CE over every seen class (FACIL with ``--num-exemplars``); ``bic`` is LwF with
``alpha_schedule = bic`` on the task and the memory, plus its bias-correction stage.

Each preset's ``source`` names the paper or the library file (and lines) it follows; its
``description`` says what the library does that these options cannot express.
"""

from __future__ import annotations

from typing import Any

from .base import Strategy
from .bic import BiC
from .compress import KD, Compress
from .der import DER
from .eeil import EEIL
from .er import ER
from .ewc import EWC
from .icarl import ICaRL
from .joint import Joint
from .lwf import LwF
from .registry import (
    FAMILIES,
    PRESETS,
    StrategyPreset,
    build_strategy,
    register,
    register_family,
    strategy_preset,
)
from .ssil import SSIL
from .wa import WA

__all__ = ["BUILT_IN", "FAMILIES", "PRESETS", "StrategyPreset", "build_strategy", "register",
           "register_family", "strategy_preset"]


_AVALANCHE = "avalanche-lib 0.6.0, avalanche/training"
_VDV = "GMvandeVen/continual-learning"
_MAMMOTH = "aimagelab/mammoth@7ab9db9"
#: LwF's options with an exemplar memory as FACIL and PyCIL run it (``lwf-facil-exemplars``,
#: ``wa``): CE over every seen class + alpha * soft CE at T = 2 (no T^2) over the old classes,
#: on the task's and the memory's examples, 2000 exemplars.
_LWF_WITH_EXEMPLARS: dict[str, Any] = {
    "distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": False, "logits": "old",
    "distill_reduction": "sum", "alpha_schedule": "constant", "teacher_input": "same",
    "ce_scope": "seen", "warmup_epochs": 0, "memory.size": 2000,
}

#: The options of the compress presets: alpha = beta = 1, T = 2 with T^2, KL (Hinton et al. 2015).
_COMPRESS: dict[str, Any] = {"alpha": 1.0, "beta": 1.0, "temperature": 2.0, "t2_scaling": True,
                             "distill_loss": "kl", "distill_reduction": "sum",
                             "teacher_input": "same", "ce_scope": "seen"}

BUILT_IN: tuple[StrategyPreset, ...] = (
    StrategyPreset(
        "naive", Strategy,
        "plain fine-tuning on each task in turn (the lower bound)",
        "-",
    ),
    StrategyPreset(
        "lwf", LwF,
        "Learning without Forgetting as published: CE + 1 * soft CE(teacher/T=2, student/T) "
        "over the old outputs (one term per old head, summed), no T^2, teacher on the "
        "same batch, 1 epoch of new-head warm-up (the paper warms up to convergence)",
        "Li & Hoiem 2016 (TPAMI 2018), section 3: eq. 2-3 (modified cross-entropy, T = 2), "
        "Algorithm 1 (lambda_o = 1, warm-up step)",
        {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": False,
         "logits": "old", "distill_reduction": "sum", "alpha": 1.0,
         "alpha_schedule": "constant", "teacher_input": "same", "ce_scope": "seen",
         "warmup_epochs": 1},
    ),
    StrategyPreset(
        "lwf-vdv2019", LwF,
        "LwF of van de Ven & Tolias 2019: (1/t) CE + (1 - 1/t) T^2 soft CE, T = 2, averaged "
        "over earlier heads (task-il); class-il: student softmax over all seen classes "
        "against the teacher's over the old ones, zero-padded",
        f"van de Ven & Tolias 2019, 'Three scenarios for continual learning'; {_VDV} "
        "utils.py@26f00db l.18-45 (loss_fn_kd: zero padding, * T**2), encoder.py@10811aa "
        "Classifier.train_a_batch (replay loss = sum/n_replays; rnt*CE + (1-rnt)*KD), "
        "train.py@10811aa train_cl (active_classes, rnt = 1/task)",
        {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": True,
         "logits": "padded", "distill_reduction": "mean", "alpha": 1.0,
         "alpha_schedule": "vdv2019", "teacher_input": "same", "ce_scope": "seen",
         "warmup_epochs": 0},
    ),
    StrategyPreset(
        "lwf-vdv2022", LwF,
        "LwF of van de Ven, Tuytelaars & Tolias 2022: CE + (t-1) * soft CE (T = 2, no T^2) "
        "averaged over earlier heads in task-il and domain-il, CE + soft CE in class-il "
        "(zero-padded teacher over the seen classes)",
        f"van de Ven et al. 2022, 'Three types of incremental learning' (Nat. Mach. "
        f"Intell.); {_VDV} models/classifier.py@0fa419e l.191-196 (KD over the active "
        "classes) and l.210-213 (mean over contexts, * (context-1) unless Class-IL), "
        "'Combine loss' block (loss_cur + loss_replay); models/utils/loss_functions.py"
        "@df9f983 l.12-41 (T**2 only with norm=True, not passed); main.py (lwf_weighting "
        "for replay='current' with distillation)",
        {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": False,
         "logits": "padded", "distill_reduction": "mean", "alpha": 1.0,
         "alpha_schedule": "vdv2022", "teacher_input": "same", "ce_scope": "seen",
         "warmup_epochs": 0},
    ),
    StrategyPreset(
        "lwf-mammoth", LwF,
        "Mammoth's LwF: CE over seen classes + 0.5 * soft CE (T = 2, no T^2) over the "
        "old classes, teacher logits computed once per task on non-augmented inputs, "
        "head warm-up (Mammoth: n_epochs epochs of plain SGD with the model in eval mode; "
        "1 here, its Seq-MNIST setting; best_args use alpha 1 on Seq-MNIST, 3 on "
        "Seq-CIFAR-10). Class-il only: Mammoth's task-il numbers are the task-aware "
        "matrix of the class-il run",
        "aimagelab/mammoth models/lwf.py (2022-present version) l.13-19 (smooth, "
        "modified_kl_div), l.29-32 (alpha 0.5, softmax_temp 2), l.41-56 (warm-up of the "
        "classifier), l.58-67 (teacher logits on not_aug inputs), l.74-77 (CE over "
        ":n_seen_classes, KD over :n_past_classes); Buzzega et al. 2020 (DER)",
        {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": False,
         "logits": "old", "distill_reduction": "sum", "alpha": 0.5,
         "alpha_schedule": "constant", "teacher_input": "clean", "ce_scope": "seen",
         "warmup_epochs": 1},
        scenarios=("class-il",),
    ),
    StrategyPreset(
        "lwf-avalanche", LwF,
        "Avalanche's LwF: CE + 1 * KL(teacher/T=2 || student/T) with reduction batchmean, "
        "no T^2, softmax over each old head's active units (classes seen in that task "
        "label), summed over heads. Avalanche's teacher is a deepcopy in train mode "
        "(differs only with batch norm or dropout); its CE spans every unit of a "
        "fixed-size head in class-il",
        f"{_AVALANCHE}/regularization.py l.83-99 (_distillation_loss: log_softmax/softmax "
        "of out[:, au] / T, kl_div batchmean), l.101-131 (_lwf_penalty: sum over task "
        "heads), l.133-142 (alpha), l.144-164 (post_adapt: teacher, active units); "
        "plugins/lwf.py l.13 (alpha=1, temperature=2), l.27 (loss += penalty)",
        {"distill_loss": "kl", "temperature": 2.0, "t2_scaling": False,
         "logits": "old", "distill_reduction": "sum", "alpha": 1.0,
         "alpha_schedule": "constant", "teacher_input": "same", "ce_scope": "seen",
         "warmup_epochs": 0},
    ),
    StrategyPreset(
        "lwf-facil", LwF,
        "FACIL's LwF without exemplars: CE over the current task's head + 1 * soft CE "
        "(T = 2, no T^2) over the concatenated old heads (one softmax), teacher on the "
        "same batch. FACIL also freezes the old heads and adds eps = 1e-5 to the student's "
        "probabilities, which these options do not do. Class-il only (FACIL reports "
        "task-aware and task-agnostic accuracy of the same run)",
        "mmasana/FACIL src/approach/lwf.py@66e3e8e l.17-19 (lamb=1, T=2, wu_nepochs=0), "
        "l.46-53 (old heads not optimised), l.72-78 (model_old in eval mode), l.85-92 "
        "(teacher on the same images), l.120-134 (cross_entropy, exp = 1/T), l.136-146 "
        "(criterion: KD over outputs[:t], CE over outputs[t]); Masana et al. 2022 (TPAMI)",
        {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": False,
         "logits": "old", "distill_reduction": "sum", "alpha": 1.0,
         "alpha_schedule": "constant", "teacher_input": "same", "ce_scope": "current",
         "warmup_epochs": 0},
        scenarios=("class-il",),
    ),
    StrategyPreset(
        "joint", Joint,
        "the upper bound: at each task, train on the union of all tasks' data so far "
        "(strategy.mode = final: once, at the last task)",
        "van de Ven & Tolias 2019 ('Joint'); GMvandeVen/continual-learning "
        "train/train_task_based.py (baseline 'cummulative' / 'joint')",
        {"mode": "incremental"},
    ),
    StrategyPreset(
        "er", ER,
        "experience replay as Mammoth: each batch joined by a draw of memory.batch_size "
        "examples from a reservoir memory (default 500), one mean CE over all outputs of the "
        "head over both; the memory takes the batch's non-augmented images after each step",
        f"Chaudhry et al. 2019 ('On tiny episodic memories'); {_MAMMOTH} models/er.py l.29-48 "
        "(join, CE, add_data), utils/buffer.py l.12-26 (reservoir), l.89-106 (get_data: "
        "without replacement)",
        {"ce_scope": "all", "memory.policy": "reservoir", "memory.size": 500},
    ),
    StrategyPreset(
        "er-avalanche", ER,
        "Avalanche's Replay: a task-balanced memory (default 500; an equal share per task, "
        "random inside it) updated at each task's end, each batch joined by memory.batch_size "
        "memory examples, CE over the classes seen. Avalanche cycles through the memory in "
        "shuffled passes; here each step draws anew",
        f"{_AVALANCHE}/plugins/replay.py (ReplayPlugin: ExperienceBalancedBuffer, "
        "ReplayDataLoader, after_training_exp update), storage_policy.py "
        "(ExperienceBalancedBuffer, ReservoirSamplingBuffer l.110-124)",
        {"ce_scope": "seen", "memory.policy": "task_balanced", "memory.size": 500},
    ),
    StrategyPreset(
        "der", DER,
        "Dark Experience Replay as Mammoth: CE + alpha * MSE between the outputs on a "
        "memory draw and the logits recorded when those examples entered a reservoir memory "
        "(default 500, alpha 0.3: best_args seq-cifar10, buffer 500)",
        f"Buzzega et al. 2020 (NeurIPS), eq. 4; {_MAMMOTH} models/der.py l.30-47, "
        "utils/buffer.py l.12-26, utils/best_args.py",
        {"ce_scope": "all", "alpha": 0.3, "beta": 0.0, "memory.policy": "reservoir",
         "memory.size": 500},
    ),
    StrategyPreset(
        "derpp", DER,
        "DER++ as Mammoth: DER + beta * CE on a second, independent memory draw (default "
        "500, alpha 0.1, beta 0.5: best_args seq-cifar10, buffer 500)",
        f"Buzzega et al. 2020 (NeurIPS), eq. 6; {_MAMMOTH} models/derpp.py l.34-58, "
        "utils/buffer.py l.12-26, utils/best_args.py",
        {"ce_scope": "all", "alpha": 0.1, "beta": 0.5, "independent_draws": True,
         "memory.policy": "reservoir", "memory.size": 500},
    ),
    StrategyPreset(
        "der-avalanche", DER,
        "Avalanche's DER with beta = 0: a class-balanced memory (default 500) updated at each "
        "task's end with the logits of the model after the task on the clean inputs, CE over "
        "all outputs + alpha (0.1) * MSE on one memory draw; Avalanche replays only once the "
        "memory holds a whole draw (drop_last), here as soon as it holds any",
        f"{_AVALANCHE}/supervised/der.py l.57-139 (ClassBalancedBufferWithLogits), l.262-293 "
        "(loss), l.158 (alpha 0.1, beta 0.5)",
        {"ce_scope": "all", "alpha": 0.1, "beta": 0.0, "memory.policy": "class_balanced",
         "memory.size": 500},
    ),
    StrategyPreset(
        "derpp-avalanche", DER,
        "Avalanche's DER (its defaults alpha 0.1, beta 0.5: DER++): as der-avalanche, the "
        "beta * CE term on the same memory draw as the MSE",
        f"{_AVALANCHE}/supervised/der.py l.57-139, l.262-293 (one draw for both terms)",
        {"ce_scope": "all", "alpha": 0.1, "beta": 0.5, "independent_draws": False,
         "memory.policy": "class_balanced", "memory.size": 500},
    ),
    StrategyPreset(
        "icarl", ICaRL,
        "iCaRL: herding memory (default 2000 examples in all), training on the task and the "
        "memory with BCE over the classes seen, the previous model's sigmoid outputs as "
        "targets of the old classes, nearest-mean-of-exemplars prediction",
        "Rebuffi et al. 2017 (CVPR), sections 2.1-2.2, Algorithms 1-5; "
        f"{_MAMMOTH} models/icarl.py l.80-108 (BCE, old targets = sigmoid of old_net), "
        "l.110-125 (memory joins the training data), l.153-221 (herding)",
        {"prediction": "nme", "memory.policy": "herding", "memory.size": 2000,
         "ce_scope": "seen"},
        scenarios=("class-il", "task-il"),
    ),
    StrategyPreset(
        "icarl-random", ICaRL,
        "iCaRL with random exemplars: as icarl, but each class's share of the memory "
        "(default 2000) is drawn at random at each task's end from the class's examples in "
        "memory and in the new task (FACIL's default exemplar selection)",
        "Rebuffi et al. 2017 (CVPR), Algorithms 1-3; mmasana/FACIL "
        "src/datasets/exemplars_selection.py@e09d2c8 l.53-69 (RandomExemplarsSelector)",
        {"prediction": "nme", "memory.policy": "random", "memory.size": 2000,
         "ce_scope": "seen"},
        scenarios=("class-il", "task-il"),
    ),
    StrategyPreset(
        "bic", BiC,
        "BiC: exemplar memory (default 2000, random per class; 10 % of each class's share held "
        "out as validation, never trained on), (1 - lambda) CE + lambda * soft CE (T = 2, no "
        "T^2) over the old classes, lambda = n_old / n_seen, on student and teacher logits with "
        "the earlier tasks' corrections; then 200 epochs training only (alpha, beta) of the new "
        "classes' logits on the validation set, model frozen (+ 0.1 * beta^2 / 2); FACIL's SGD "
        "momentum 0.9 of stage 2 is the run's optimiser here",
        "Wu et al. 2019 (CVPR), sections 3-4, eq. 1-5; mmasana/FACIL src/approach/bic.py@66e3e8e "
        "l.60-65 (val 0.1, 200 bias epochs), l.86-139 (split, union), l.149-201 (stage 2), "
        "l.211-230 (bias_forward on student and teacher), l.255-285 (soft CE, no T^2, lambda)",
        {"distill_loss": "soft_ce", "temperature": 2.0, "t2_scaling": False, "logits": "old",
         "distill_reduction": "sum", "alpha": 1.0, "alpha_schedule": "bic",
         "teacher_input": "same", "ce_scope": "seen", "warmup_epochs": 0, "validation": 0.1,
         "bias_epochs": 200, "memory.policy": "random", "memory.size": 2000},
        scenarios=("class-il",),
    ),
    StrategyPreset(
        "lwf-facil-exemplars", LwF,
        "FACIL's LwF with exemplars (--num-exemplars 2000, random per class): the memory's "
        "examples join each task's data; CE over every seen class + 1 * soft CE (T = 2, no T^2) "
        "over the old classes on every example, teacher on the same batch; the memory takes its "
        "per-class share after each task. FACIL's eps = 1e-5 smoothing is not done. Class-il only",
        "mmasana/FACIL src/approach/lwf.py@66e3e8e l.46-53 (all heads trained with exemplars), "
        "l.58-64 (trn_loader = task data + exemplars), l.69-70 (collect_exemplars), l.136-146 "
        "(criterion: with exemplars CE over all heads); src/datasets/exemplars_dataset.py "
        "l.25-31 (selection default random); src/datasets/exemplars_selection.py l.35-47, l.53-70",
        {**_LWF_WITH_EXEMPLARS, "alpha": 1.0, "memory.policy": "random"},
        scenarios=("class-il",),
    ),
    StrategyPreset(
        "kd", KD,
        "knowledge distillation, offline reference of compression: at every task the teacher "
        "(teacher.*) trains jointly on all tasks so far, then the student on the same union with "
        "CE + 1 * T^2 KL(teacher/T || student/T), T = 2, over every unit seen",
        "Hinton, Vinyals & Dean 2015, 'Distilling the knowledge in a neural network', section 2 "
        "(soft targets at temperature T, gradients scaled by T^2)",
        {"alpha": 1.0, "temperature": 2.0, "t2_scaling": True, "distill_loss": "kl",
         "distill_reduction": "sum", "teacher_input": "same", "ce_scope": "seen",
         "mode": "incremental"},
    ),
    StrategyPreset(
        "compress", Compress,
        "continual teacher -> student: at every task the teacher (teacher.*) learns the task "
        "with teacher.strategy (default naive), then the student trains on the task (+ the "
        "teacher's memory) with CE + 1 * T^2 KL to the teacher over every unit seen + 1 * T^2 KL "
        "to its own previous self over the old units, T = 2",
        "this project (the question of issue 15); KD terms as Hinton et al. 2015, section 2; the "
        "previous-self term as LwF (Li & Hoiem 2016)",
        _COMPRESS,
    ),
    StrategyPreset(
        "compress-lwf", Compress,
        "compress with an LwF teacher (the lwf preset trains the teacher)",
        "as compress; the teacher's strategy: Li & Hoiem 2016 (the lwf preset)",
        {**_COMPRESS, "teacher.strategy": "lwf"},
    ),
    StrategyPreset(
        "compress-derpp", Compress,
        "compress with a DER++ teacher (the derpp preset, its memory memory.*; the student "
        "trains on the memory too)",
        "as compress; the teacher's strategy: Buzzega et al. 2020 (the derpp preset)",
        {**_COMPRESS, "teacher.strategy": "derpp"},
    ),
    StrategyPreset(
        "ewc", EWC,
        "elastic weight consolidation: CE + sum over earlier tasks of (lambda/2) F_i "
        "(theta_i - theta*_i)^2, diagonal Fisher from fisher_samples examples "
        "(strategy.ewc_online = true: online EWC with decay ewc_gamma)",
        "Kirkpatrick et al. 2017 (PNAS), eq. 3; online: Schwarz et al. 2018 (Progress & "
        "Compress)",
        {"ewc_lambda": 100.0, "ewc_online": False, "ewc_gamma": 1.0,
         "fisher_samples": 1000, "ewc_fisher": "true"},
    ),
    StrategyPreset(
        "wa", WA,
        "WA: LwF with a herding memory (default 2000 examples in all): CE over every seen class "
        "+ 2 * soft CE (T = 2, no T^2) over the old classes on the task's and the memory's "
        "examples, then the new classes' classifier weights rescaled to the old ones' mean norm "
        "after each task. Class-il only",
        "Zhao et al. 2020 (CVPR), section 3.3, eq. 6-7; G-U-N/PyCIL@27a5ed8 models/wa.py "
        "(_update_representation: loss_clf + 2 * loss_kd, T = 2, _KD_loss; after_task and _train: "
        "weight_align), utils/inc_net.py (IncrementalNet.weight_align, build_rehearsal_memory)",
        {**_LWF_WITH_EXEMPLARS, "alpha": 2.0, "memory.policy": "herding"},
        scenarios=("class-il",),
    ),
    StrategyPreset(
        "ssil", SSIL,
        "SS-IL: each batch joined by a memory draw (default 2000 examples, 32 per draw); "
        "cross-entropy separated between the current task's classes (new examples) and the "
        "earlier ones (replayed examples), + T^2 * KL at T = 2 per earlier task from the previous "
        "model on both. Class-il only",
        "Ahn et al. 2021 (ICCV), section 4, eq. 3-4; hongjoon0805/SS-IL-Official@01818f3 "
        "trainer/ssil.py (loss_CE_curr over [mid:end], loss_CE_prev over [0:mid], sum / "
        "(batch + replay); loss_KD: kl_div batchmean * T^2 per task, T = 2), arguments.py "
        "(--replay-batch-size 32)",
        {"alpha": 1.0, "temperature": 2.0, "memory.policy": "class_balanced",
         "memory.size": 2000, "memory.batch_size": 32},
        scenarios=("class-il",),
    ),
    StrategyPreset(
        "eeil", EEIL,
        "EEIL as FACIL runs it: exemplar memory (default 2000, random per class); each task "
        "after the first trains on its examples and the memory's with CE over the seen classes "
        "+ 1 * BCE between softmaxes at T = 2 per old task (FACIL: tasks 0..t-2), then a "
        "balanced fine-tuning on the memory and as many of the task's examples (40 epochs at "
        "0.01 * train.lr; tasks 0..t-1 distilled). Class-il only",
        "Castro et al. 2018 (ECCV), sections 3-4; mmasana/FACIL@e0563c7 src/approach/eeil.py "
        "(train_loop: _train_unbalanced then _train_balanced; _get_train_loader; criterion: "
        "last_head_idx; extra_parser: --lamb 1, --T 2, --lr-finetuning-factor 0.01, "
        "--nepochs-finetuning 40)",
        {"alpha": 1.0, "temperature": 2.0, "finetuning_lr_factor": 0.01, "finetuning_epochs": 40,
         "ce_scope": "seen", "memory.policy": "random", "memory.size": 2000},
        scenarios=("class-il",),
    ),
)


for _preset in BUILT_IN:
    register(_preset)
